"""Jobs on a Ray cluster through the Ray Jobs API: submit, status, logs, stop.

    tierline submit jobs/examples/classify.yaml --address http://ray-head:8265
    tierline status tierline-nightly-tickets-3f2a9c1b7e --address http://ray-head:8265

The spec travels as a file in the job's working directory; provider keys do not travel
at all: the runtime environment names the variables, and the cluster's pods hold them
(e.g. from Kubernetes Secrets). The submission id is derived from the spec and input, so
submitting the same night twice is refused instead of starting a second driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.common import Address, OutputFormat, SpecArg, err, load_or_exit, out
from schemas.job import JobSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS)


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
        sid = submission_id(spec)
        entry = " ".join(["tierline", "run", "spec.yaml", *extra_args])
        metadata = {
            "tierline_job": spec.name,
            # Names only: the values live on the cluster, never in the submission.
            "secret_env_vars": ",".join(secret_env_names(spec)),
        }
        return str(
            client(address).submit_job(
                entrypoint=entry,
                submission_id=sid,
                runtime_env=runtime_env,
                metadata=metadata,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def status(sid: str, address: str | None) -> dict[str, Any]:
    info = client(address).get_job_info(sid)
    return {
        "submission_id": sid,
        "status": str(info.status),
        "message": info.message,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "entrypoint": info.entrypoint,
    }


def logs(sid: str, address: str | None) -> str:
    return str(client(address).get_job_logs(sid))


def stop(sid: str, address: str | None) -> bool:
    return bool(client(address).stop_job(sid))


def wait(sid: str, address: str | None, poll_s: float = 5.0) -> str:
    c = client(address)
    while True:
        st = str(c.get_job_status(sid))
        if st in ("SUCCEEDED", "FAILED", "STOPPED"):
            return st
        time.sleep(poll_s)


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
        sid = submit(s, spec.read_text(), address=address, package=package, extra_args=args)
    except (RuntimeError, ValueError, ConnectionError) as exc:
        err.print(f"[red]submit failed:[/] {str(exc).splitlines()[0]}")
        raise typer.Exit(1) from None
    print(sid)
    if wait_for_end:
        final = wait(sid, address)
        err.print(f"{sid}: {final}")
        raise typer.Exit(0 if final == "SUCCEEDED" else 1)


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
    info = status(submission_id, address)
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
    sys.stdout.write(logs(submission_id, address))


def stop_command(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
) -> None:
    """Stop a submitted job. Committed units stay; submitting again resumes the rest.

    Example:  tierline stop tierline-nightly-tickets-3f2a9c1b7e
    """
    stopped = stop(submission_id, address)
    out.print(f"{submission_id}: {'stopping' if stopped else 'not running'}")
