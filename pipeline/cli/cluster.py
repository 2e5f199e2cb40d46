"""Jobs on a Ray cluster through the Ray Jobs API: submit, status, logs, stop.

    tierline submit jobs/examples/classify.yaml --address http://ray-head:8265
    tierline status tierline-nightly-tickets-3f2a9c1b7e --address http://ray-head:8265

The spec travels as the only file of the job's working directory; provider keys do not
travel at all: the runtime environment names the variables, and the cluster's pods hold
them (e.g. from Kubernetes Secrets). The submission id is derived from the spec and
input, so submitting the same night twice is refused instead of starting a second driver.
The entrypoint runs the cluster's Python (`python -m pipeline.cli run`), never the
`tierline` console script, which a cluster's PATH need not hold. The cluster's token is
found where Ray's CLI finds it (see `raytoken`); every failure to reach the cluster is
one line naming the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from pipeline.cli.common import Address, OutputFormat, SpecArg, err, load_or_exit, out
from pipeline.cli.raytoken import (
    RayToken,
    TokenError,
    find_token,
    missing_token_message,
    refused_token_message,
)
from schemas.job import JobSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterError(Exception):
    """The cluster could not be reached or refused the request; the message is one line."""


def resolve_address(address: str | None) -> str:
    return (address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS).rstrip("/")


@contextmanager
def reaching(address: str, token: RayToken | None) -> Iterator[None]:
    """Ray's job client failures as one-line `ClusterError`s (never the token itself)."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        # Ray's text: "Authentication required" for 401, "Authentication failed" for 403.
        if str(exc).startswith("Authentication required") and token is None:
            raise ClusterError(missing_token_message(address)) from None
        raise ClusterError(refused_token_message(address, token)) from None
    except (RuntimeError, ValueError, ConnectionError, OSError) as exc:
        raise ClusterError(f"Ray cluster at {address}: {gist(str(exc))}") from None


def gist(message: str) -> str:
    """One line of a Ray error: its first, or the last of a server traceback it carries."""
    lines = [x.strip() for x in message.strip().splitlines() if x.strip()] or ["no detail"]
    if "Traceback (most recent call last)" in message:
        return f"{lines[0].split(': Traceback')[0]}: {lines[-1].rstrip('.')}"
    return lines[0]


def client(address: str, token: RayToken | None) -> Any:
    """Ray's job client for `address`, sending the cluster's token when one was found."""
    import logging

    from ray.job_submission import JobSubmissionClient

    # Ray's INFO lines about packaging the working folder are not this command's output.
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return JobSubmissionClient(address, headers=token.headers() if token else None)


@contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """A job client for the cluster; failures, from connecting or from a call made inside
    the block, come out as one-line `ClusterError`s."""
    where = resolve_address(address)
    try:
        token = find_token(os.environ, Path.home())
    except TokenError as exc:
        raise ClusterError(str(exc)) from None
    with reaching(where, token):
        yield client(where, token)


def fail(exc: ClusterError) -> NoReturn:
    err.print(f"[red]error:[/] {exc}")
    raise typer.Exit(1)


def entrypoint(python: str, extra_args: list[str]) -> str:
    """The driver's command on the cluster: its Python running our module, no console
    script (a cluster's PATH holds `python`, not every package's scripts)."""
    return shlex.join([python, "-m", "pipeline.cli", "run", "spec.yaml", *extra_args])


def submission_id(spec: JobSpec) -> str:
    doc = json.dumps(
        {"name": spec.name, "input": spec.input.uri, "output": spec.output.uri}, sort_keys=True
    )
    return f"tierline-{spec.name}-{hashlib.sha256(doc.encode()).hexdigest()[:10]}"


def secret_env_names(spec: JobSpec) -> list[str]:
    return sorted({p.api_key_env for p in spec.providers.values() if p.api_key_env})


def stop_wait_s(spec: JobSpec) -> int:
    """How long Ray waits after its SIGTERM: the run's grace, and time to write and end."""
    return int(spec.run.stop_grace_s) + 15


def submit(
    spec: JobSpec,
    spec_text: str,
    *,
    address: str | None,
    package: str,
    extra_args: list[str],
    python: str = "python",
) -> str:
    """Upload the spec and start `tierline run` on the cluster; returns the submission id."""
    workdir = Path(tempfile.mkdtemp(prefix="tierline-submit-"))
    try:
        (workdir / "spec.yaml").write_text(spec_text)
        runtime_env: dict[str, Any] = {
            "working_dir": str(workdir),
            # `tierline stop` reaches the driver as SIGTERM; Ray kills it 3 s later unless
            # told to wait, which would cut the run's graceful stop short.
            "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(stop_wait_s(spec))},
        }
        if package:
            runtime_env["pip"] = [package]
        metadata = {
            "tierline_job": spec.name,
            # Names only: the values live on the cluster, never in the submission.
            "secret_env_vars": ",".join(secret_env_names(spec)),
        }
        with connected(address) as c:
            return str(
                c.submit_job(
                    entrypoint=entrypoint(python, extra_args),
                    submission_id=next_attempt(c, submission_id(spec)),
                    runtime_env=runtime_env,
                    metadata=metadata,
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def next_attempt(c: Any, sid: str) -> str:
    """`sid` the first time; once its job has ended (stopped, failed), `sid-2`, `-3`...
    so submitting again resumes. Ray keeps ended jobs' ids and refuses them again; a
    job of this id still pending or running is refused here, naming it."""
    known = {str(j.submission_id): str(j.status) for j in c.list_jobs() if j.submission_id}
    for n in itertools.count(1):
        attempt = sid if n == 1 else f"{sid}-{n}"
        state = known.get(attempt)
        if state is None:
            return attempt
        if state not in FINAL_STATES:
            raise ClusterError(f"{attempt} is already {state}: `tierline status {attempt}`")
    raise AssertionError("unreachable")


def status(sid: str, address: str | None) -> dict[str, Any]:
    with connected(address) as c:
        info = c.get_job_info(sid)
    return {
        "submission_id": sid,
        "status": str(info.status),
        "message": info.message,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "entrypoint": info.entrypoint,
    }


def logs(sid: str, address: str | None) -> str:
    with connected(address) as c:
        return str(c.get_job_logs(sid))


def stop(sid: str, address: str | None) -> bool:
    with connected(address) as c:
        return bool(c.stop_job(sid))


def wait(sid: str, address: str | None, poll_s: float = 2.0) -> dict[str, Any]:
    """The job's status once it has ended (see `status`)."""
    with connected(address) as c:
        while str(c.get_job_status(sid)) not in FINAL_STATES:
            time.sleep(poll_s)
    return status(sid, address)


# --- the commands -----------------------------------------------------------------


def submit_command(
    spec: SpecArg,
    address: Address = None,
    input_uri: Annotated[
        str | None, typer.Option("--input", help="Input URI (overrides the spec).")
    ] = None,
    package: Annotated[
        str, typer.Option(help="pip requirement the cluster installs (empty: already there).")
    ] = "",
    python: Annotated[
        str,
        typer.Option(
            help="The cluster's Python that has tierline (default: `python` on its PATH)."
        ),
    ] = "python",
    wait_for_end: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the job and exit with its result.")
    ] = False,
    job_id: Annotated[
        str | None,
        typer.Option(help="Job id (its output folder name); default from spec and input."),
    ] = None,
) -> None:
    """Submit a job to a Ray cluster (Ray Jobs API); prints the submission id.

    Provider keys are not sent: the cluster's pods hold the variables the spec names.

    Example:  tierline submit jobs/examples/nightly-tickets.yaml --address http://ray-head:8265
    """
    s = load_or_exit(spec, input_uri=input_uri)
    args = ["--input", input_uri] if input_uri else []
    args += ["--job-id", job_id] if job_id else []
    try:
        sid = submit(
            s, spec.read_text(), address=address, package=package, extra_args=args, python=python
        )
        print(sid)
        if not wait_for_end:
            return
        final = wait(sid, address)
    except ClusterError as exc:
        fail(exc)
    err.print(f"{sid}: {final['status']} {final['message'] or ''}".rstrip())
    raise typer.Exit(0 if final["status"] == "SUCCEEDED" else 1)


def status_command(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print it.")] = (
        OutputFormat.table
    ),
) -> None:
    """Show a submitted job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

    Example:  tierline status tierline-nightly-tickets-3f2a9c1b7e
    """
    try:
        info = status(submission_id, address)
    except ClusterError as exc:
        fail(exc)
    if output_format is OutputFormat.json:
        print(json.dumps(info, indent=2))
    else:
        out.print(f"{submission_id}: {info['status']} {info['message'] or ''}".rstrip())


def logs_command(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
) -> None:
    """Print a submitted job's driver logs.

    Example:  tierline logs tierline-nightly-tickets-3f2a9c1b7e
    """
    try:
        text = logs(submission_id, address)
    except ClusterError as exc:
        fail(exc)
    sys.stdout.write(text)


def stop_command(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
) -> None:
    """Stop a submitted job. Committed units stay; submitting again resumes the rest.

    Example:  tierline stop tierline-nightly-tickets-3f2a9c1b7e
    """
    try:
        stopped = stop(submission_id, address)
    except ClusterError as exc:
        fail(exc)
    out.print(f"{submission_id}: {'stopping' if stopped else 'not running'}")
