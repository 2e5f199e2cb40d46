"""Storage checked before a job: can tierline list its input and write its output?

    problems = probe_storage(input_uri="s3://acme/tickets/2026-12-04/",
                             output_uri="s3://acme/tierline/")     # [] when both are fine

Each S3 location is asked once, with a short timeout and one retry: are credentials
found, is the endpoint reachable, does the bucket exist, may the prefix be listed, and
(for outputs) may an object be written and deleted there. The same calls a run makes
would otherwise retry for about a minute before failing; a probe fails in seconds with
one line naming the URI, what was tried and the fix. Local folders are checked the same
way (the input exists, the output can be created and written). The calls stay inside the
least-privilege policy (infra/iam/): ListBucket on the prefix, Put/DeleteObject under it.
Messages never carry credentials: they name the error code, never a key.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import redact

if TYPE_CHECKING:
    from schemas.job import JobSpec

PROBE_TIMEOUT_S = 5.0
PROBE_NAME = ".tierline-probe-"  # hidden: no lister of job folders takes it for a job


def probe_spec(spec: JobSpec, *, output_uri: str | None = None) -> list[str]:
    """`probe_storage` for a job: its input, its output (or `output_uri`), its response
    cache when the cache is on."""
    return probe_storage(
        input_uri=spec.input.uri,
        output_uri=output_uri or spec.output.uri,
        cache_uri=spec.cache_uri if spec.cache != "off" else None,
    )


def probe_storage(
    *,
    input_uri: str,
    output_uri: str,
    cache_uri: str | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> list[str]:
    """One line per reason a location cannot be used, '<field> <uri>: <why>; fix: <what>'
    (locations failing for the same reason share a line)."""
    found: dict[str, list[str]] = {}
    s3 = _S3(timeout_s)
    for field, uri, write in (
        ("input.uri", input_uri, False),
        ("output.uri", output_uri, True),
        ("cache_uri", cache_uri, True),
    ):
        if uri is None:
            continue
        if uri.startswith("s3://"):
            problem = s3.probe(uri, write=write)
        else:
            path = Path(uri.removeprefix("file://")).expanduser().resolve()
            problem = _probe_local(path, write=write)
        if problem:
            found.setdefault(_scrub(problem), []).append(f"{field} {uri}")
    return [f"{', '.join(where)}: {why}" for why, where in found.items()]


def _probe_local(path: Path, *, write: bool) -> str | None:
    if not write:
        if not path.is_dir():
            return (
                f"folder does not exist (resolved to {path}); relative paths are taken from "
                "the current directory: run from there, or give an absolute path"
            )
        if not os.access(path, os.R_OK | os.X_OK):
            return f"folder {path} cannot be read; fix: give this user read access"
        return None
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder; fix: give a folder for the outputs"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"folder {existing} is not writable; fix: give a folder this user may write"
    return None


class _S3:
    """One session for every S3 location of a probe: credentials are looked up once
    (the lookup may wait on an instance-metadata endpoint that is not there)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client: Any = None
        self._problem: str | None = None
        self._where = ""

    def _connect(self) -> str | None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        if self._client is not None or self._problem is not None:
            return self._problem
        session = boto3.session.Session()
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = session.region_name or "no region set"
        self._where = f"endpoint {endpoint}" if endpoint else f"AWS S3 ({region})"
        try:
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # a broken profile or credential process
            self._problem = (
                f"credentials could not be loaded ({type(exc).__name__}); fix: {_CRED_FIX}"
            )
            return self._problem
        if credentials is None:
            self._problem = (
                "no AWS credentials found (tried the environment, AWS_PROFILE and ~/.aws, "
                f"the pod or instance role); fix: {_CRED_FIX}"
            )
            return self._problem
        t = self.timeout_s
        # Two attempts: a moment's throttling (503 SlowDown) must not fail a job, and an
        # endpoint that does not answer fails within two timeouts.
        config = Config(
            connect_timeout=t, read_timeout=t, retries={"max_attempts": 2, "mode": "standard"}
        )
        self._client = session.client("s3", endpoint_url=endpoint or None, config=config)
        return None

    def probe(self, uri: str, *, write: bool) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        problem = self._connect()
        if problem:
            return problem
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        step = f"listing s3://{bucket}/{prefix} at {self._where}"
        try:
            self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            if write:
                key = f"{prefix}{PROBE_NAME}{uuid.uuid4().hex}"
                step = f"writing s3://{bucket}/{key} at {self._where}"
                self._client.put_object(Bucket=bucket, Key=key, Body=b"")
                step = f"deleting s3://{bucket}/{key} at {self._where}"
                self._client.delete_object(Bucket=bucket, Key=key)
        except NoCredentialsError:
            return f"no AWS credentials found; fix: {_CRED_FIX}"
        except ClientError as exc:
            return _client_error(exc, bucket, step, write)
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, TLS
            return (
                f"{step} failed within {self.timeout_s:g} s ({type(exc).__name__}); fix: "
                "check the network and AWS_ENDPOINT_URL (unset for AWS itself; MinIO, R2 "
                "or a local endpoint need it)"
            )
        return None


_CRED_FIX = (
    "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run where a "
    "role grants S3 access (infra/iam/)"
)


def _client_error(exc: Any, bucket: str, step: str, write: bool) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    if code in ("NoSuchBucket", "404"):
        return (
            f"bucket {bucket!r} does not exist ({step}); fix: create it or correct the bucket name"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return f"credentials refused ({code}, {step}); fix: {_CRED_FIX}"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        need = "s3:PutObject and s3:DeleteObject under the prefix" if write else "s3:GetObject"
        return (
            f"access denied ({step}); fix: grant s3:ListBucket on the prefix and {need} "
            "(see infra/iam/s3-policy.json)"
        )
    if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed"):
        return f"bucket {bucket!r} is in another region ({step}); fix: set AWS_REGION to it"
    message = str(error.get("Message") or "")
    return f"{step} failed: {code} {message}".rstrip()


def _scrub(text: str) -> str:
    """No credential may reach a message, whatever a server echoed back."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "***")
    return redact(text)
