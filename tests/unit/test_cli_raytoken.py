"""Finding the Ray cluster's token where Ray's CLI looks, and the one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray.exceptions import AuthenticationError
from typer.testing import CliRunner

from pipeline.cli import cluster
from pipeline.cli.app import app
from pipeline.cli.raytoken import RayToken, TokenError, find_token

SECRET = "f3c1d2e4a5b6c7d8e9f0a1b2c3d4e5f6"


def home_with_token(tmp_path: Path, value: str = SECRET) -> Path:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(value + "\n")
    return tmp_path


def test_ray_order_environment_then_named_file_then_home(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    home = home_with_token(tmp_path / "h")
    named = tmp_path / "named"
    named.write_text("from-file\n")
    env = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(named)}
    assert find_token(env, home) == RayToken("RAY_AUTH_TOKEN", "from-env")
    del env["RAY_AUTH_TOKEN"]
    assert find_token(env, home) == RayToken(f"RAY_AUTH_TOKEN_PATH ({named})", "from-file")
    got = find_token({}, home)
    assert got is not None and got.value == SECRET and got.source.endswith(".ray/auth_token")
    assert find_token({}, tmp_path / "nowhere") is None


def test_a_named_file_that_cannot_be_read_is_reported_not_skipped(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match=r"RAY_AUTH_TOKEN_PATH names .*cannot be read"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "gone")}, home_with_token(tmp_path))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")}, tmp_path)


def test_the_token_never_shows_in_its_repr_or_in_a_message(tmp_path: Path) -> None:
    token = RayToken("RAY_AUTH_TOKEN", SECRET)
    assert SECRET not in repr(token) and token.headers() == {"Authorization": f"Bearer {SECRET}"}


class Refusing:
    def __init__(self, text: str) -> None:
        self.text = text

    def get_job_info(self, sid: str) -> Any:
        raise AuthenticationError(self.text)


@pytest.mark.parametrize(
    ("env", "ray_says", "expected"),
    [
        ({}, "Authentication required: Unauthorized", "wants an authentication token"),
        ({"RAY_AUTH_TOKEN": SECRET}, "Authentication failed: Forbidden", "refused the token"),
    ],
)
def test_authentication_failures_are_one_line_naming_where_to_look(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    ray_says: str,
    expected: str,
) -> None:
    monkeypatch.setattr(cluster, "client", lambda address, token: Refusing(ray_says + "\n\nmore"))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(
        app,
        ["status", "tierline-x", "--address", "http://h:8265"],
        env={"HOME": str(tmp_path), **env},
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "http://h:8265" in lines[0]
    assert "ray get-auth-token" in lines[0] and SECRET not in result.output


def test_a_server_traceback_becomes_its_last_line() -> None:
    text = (
        "Request failed with status code 500: Traceback (most recent call last):\n"
        '  File "x.py", line 1\nValueError: Job with submission_id x already exists.\n'
    )
    assert cluster.gist(text) == (
        "Request failed with status code 500: ValueError: Job with submission_id x already exists"
    )
    assert cluster.gist("Failed to connect to Ray at address: http://h:8265.\nmore") == (
        "Failed to connect to Ray at address: http://h:8265."
    )
