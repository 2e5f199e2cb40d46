"""The Ray cluster's authentication token, found where Ray's own CLI looks for it.

    token = find_token(os.environ, Path.home())     # None when there is none
    headers = token.headers() if token else {}

A Ray head started where a token exists turns token authentication on (Ray 2.60 does so
by default), and every request to its Jobs API then needs `Authorization: Bearer ...`. Ray's job
client sends it only when `RAY_AUTH_MODE=token` is set in the client's environment, so a
user who copied the token but not the mode got a traceback. We look where Ray looks,
in Ray's order: `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, then
`~/.ray/auth_token`, and send what we find. The token itself is never printed: the
messages name where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Where the token is looked for, in the order Ray's token loader reads them.
WHERE = "RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token"
HOW_TO_GET = "`ray get-auth-token` on the head node prints it"


class TokenError(Exception):
    """The token's place is named but cannot be read."""


@dataclass(frozen=True)
class RayToken:
    source: str
    value: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def find_token(environ: Mapping[str, str], home: Path) -> RayToken | None:
    """The token from the first place that holds one; None when none does."""
    value = environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return RayToken("RAY_AUTH_TOKEN", value)
    named = environ.get("RAY_AUTH_TOKEN_PATH", "")
    if named:
        # Named on purpose: an unreadable file is a mistake to report, not to skip.
        path = Path(named).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise TokenError(
                f"RAY_AUTH_TOKEN_PATH names {path}, which cannot be read ({exc.strerror})"
            ) from None
        if not value:
            raise TokenError(f"RAY_AUTH_TOKEN_PATH names {path}, which is empty")
        return RayToken(f"RAY_AUTH_TOKEN_PATH ({path})", value)
    default = home / ".ray" / "auth_token"
    try:
        value = default.read_text().strip()
    except OSError:
        return None
    return RayToken(str(default), value) if value else None


def missing_token_message(address: str) -> str:
    return (
        f"the Ray cluster at {address} wants an authentication token and none was found "
        f"(looked in {WHERE}); {HOW_TO_GET}"
    )


def refused_token_message(address: str, token: RayToken | None) -> str:
    if token is None:
        return missing_token_message(address)
    return (
        f"the Ray cluster at {address} refused the token from {token.source}: it is not "
        f"this cluster's token; {HOW_TO_GET}"
    )
