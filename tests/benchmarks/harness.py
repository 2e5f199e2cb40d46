"""The processes a benchmark runs beside itself: the simulator, and tierline job drivers.

    sim = TimedSim.start(SimConfig(latency=Latency(mean_ms=50)))
    sim.configure(SimConfig(...)); sim.reset()     # new behaviour, empty stats and log
    ...traffic to sim.base_url...
    sim.log().steady_rate()                        # answers/s between p5 and p95
    sim.stats()["total"]["rate_limited"]
    sim.stop()

    job = run_job_child(spec, out_dir, ray_address, timeout_s=120)
    job.wall_s, job.rows_ok, job.stalled

The simulator has a process of its own so its CPU does not compete with a client's GIL,
and it logs when each completion arrived and was answered: every client is then timed
the same way, by the server, without its start-up.

A job runs in a child driver joined to the benchmark's Ray cluster (as `tierline run`
does with RAY_ADDRESS), so a job that stalls is ended at its time limit (its actors die
with their driver) and the benchmark goes on instead of waiting forever.

    python -m tests.benchmarks.harness sim CONFIG_JSON           # serves until SIGTERM
    python -m tests.benchmarks.harness job SPEC OUT ADDRESS RESULT
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.sim import SimConfig, build_app

REPO = Path(__file__).resolve().parents[2]
_COMPLETION_PATHS = ("/v1/chat/completions", "/v1/messages")
_CANCELLED = 499  # the client went away before an answer (a cut hang)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _child(args: list[str], output: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.harness", *args],
        cwd=REPO,
        env=env,
        stdout=output,
        stderr=None if output is subprocess.PIPE else output,
        text=True,
        start_new_session=True,  # its own process group: ended whole, and only it
    )


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the simulator --------------------------------------------------------------------


@dataclass(frozen=True)
class RequestLog:
    """Per completion request: arrival and answer times (epoch s), status, key tag."""

    t_in: list[float]
    t_out: list[float]
    status: list[int]
    key: list[str]

    def ok_times(self, key: str | None = None) -> list[float]:
        return sorted(
            t
            for t, s, k in zip(self.t_out, self.status, self.key, strict=True)
            if s == 200 and (key is None or k == key)
        )

    def steady_rate(self, key: str | None = None, trim: float = 0.05) -> float:
        """Answers/s between the `trim` and `1 - trim` quantiles of answer times: the
        rate once the client is up and before its tail drains."""
        times = self.ok_times(key)
        if len(times) < 20:
            return self.window_rate(key)
        lo, hi = int(len(times) * trim), int(len(times) * (1 - trim)) - 1
        span = times[hi] - times[lo]
        return (hi - lo) / span if span > 0 else 0.0

    def window_rate(self, key: str | None = None) -> float:
        """Answers/s from the first arrival to the last answer."""
        times = self.ok_times(key)
        if not times:
            return 0.0
        span = times[-1] - min(self.t_in)
        return len(times) / span if span > 0 else 0.0

    def window_s(self) -> float:
        return (max(self.t_out) - min(self.t_in)) if self.t_in else 0.0


class TimedSim:
    """Handle on a simulator subprocess (started by `start`, ended by `stop`)."""

    def __init__(self, proc: subprocess.Popen[str], root_url: str) -> None:
        self.proc = proc
        self.root_url = root_url

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @classmethod
    def start(cls, config: SimConfig) -> TimedSim:
        proc = _child(["sim", config.model_dump_json()])
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # the URL, or EOF if it failed to start
        if not line.startswith("http://"):
            _end(proc)
            raise RuntimeError(f"simulator did not start: {line!r}")
        return cls(proc, line)

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.root_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def configure(self, config: SimConfig) -> None:
        self._call("POST", "/admin/config", config.model_dump(mode="json"))

    def reset(self) -> None:
        self._call("POST", "/admin/reset-stats", {})
        self._call("POST", "/bench/reset", {})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats"))

    def log(self) -> RequestLog:
        d = self._call("GET", "/bench/log")
        return RequestLog(d["t_in"], d["t_out"], d["status"], d["key"])

    def quiesce(self, idle_s: float = 1.0, max_s: float = 30.0) -> None:
        """Wait until no request has arrived or finished for `idle_s` (a client that was
        stopped early may still have calls in flight)."""
        deadline = time.monotonic() + max_s
        last = -1
        while time.monotonic() < deadline:
            d = self._call("GET", "/bench/count")
            if d["count"] == last and d["open"] == 0:
                return
            last = d["count"]
            time.sleep(idle_s)

    def stop(self) -> None:
        _end(self.proc)


class _Log:
    def __init__(self) -> None:
        self.rows: list[tuple[float, float, int, str]] = []
        self.open = 0

    def middleware(self) -> Any:
        @web.middleware
        async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path not in _COMPLETION_PATHS:
                return await handler(request)
            t_in, status = time.time(), _CANCELLED
            self.open += 1
            try:
                resp = await handler(request)
                status = resp.status
                return resp
            finally:
                self.open -= 1
                auth = request.headers.get("Authorization") or request.headers.get("x-api-key")
                self.rows.append((t_in, time.time(), status, (auth or "anonymous")[-6:]))

        return timed

    async def get(self, request: web.Request) -> web.Response:
        names = ("t_in", "t_out", "status", "key")
        return web.json_response({n: [r[i] for r in self.rows] for i, n in enumerate(names)})

    async def count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": len(self.rows), "open": self.open})

    async def reset(self, request: web.Request) -> web.Response:
        self.rows = []
        return web.json_response({"ok": True})


async def _serve_sim(config: SimConfig) -> None:
    log = _Log()
    app = build_app(config)
    app.middlewares.append(log.middleware())
    app.router.add_get("/bench/log", log.get)
    app.router.add_get("/bench/count", log.count)
    app.router.add_post("/bench/reset", log.reset)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    print(f"http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# --- a tierline job in a child driver -------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    wall_s: float  # run_job from plan to summary (worker actors' start included)
    rows_ok: int
    rows_error: int
    status: str  # complete | incomplete | stalled | failed
    job_id: str
    detail: str = ""
    notes: tuple[str, ...] = ()  # what the driver reported on the way (units redone...)
    peak_rss_mb: float | None = None  # the child driver's own peak resident set

    @property
    def stalled(self) -> bool:
        return self.status == "stalled"


def run_job_child(spec_json: str, out: Path, address: str, timeout_s: float) -> JobRun:
    """`pipeline.engine.driver.run_job` in a child driver; ended (status 'stalled') at the limit."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path, result = out / "_bench_spec.json", out / "_bench_result.json"
    spec_path.write_text(spec_json)
    result.unlink(missing_ok=True)
    started = time.monotonic()
    with open(out / "_bench_driver.log", "w") as log:
        proc = _child(["job", str(spec_path), str(out), address, str(result)], output=log)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _end(proc)
            waited = time.monotonic() - started
            return JobRun(waited, 0, 0, "stalled", "", f"no end after {timeout_s:g}s; ended")
    if proc.returncode != 0 or not result.exists():
        tail = (out / "_bench_driver.log").read_text().strip().splitlines()[-3:]
        detail = f"child driver exited {proc.returncode}: {' | '.join(tail)}"
        return JobRun(0.0, 0, 0, "failed", "", detail)
    d = json.loads(result.read_text())
    return JobRun(
        d["wall_s"], d["rows_ok"], d["rows_error"], d["status"], d["job_id"], "",
        tuple(d["notes"]), d.get("peak_rss_mb"),
    )  # fmt: skip


def peak_rss_mb() -> float | None:
    """This process's peak resident set since it started (VmHWM; not ru_maxrss, which on
    Linux keeps the peak of the parent it was forked from), None where /proc has none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _job_main(spec_path: str, out: str, address: str, result: str) -> None:
    import ray

    from pipeline.engine.driver import QuietProgress, run_job
    from schemas.job import JobSpec

    class Notes(QuietProgress):
        def __init__(self) -> None:
            self.notes: list[str] = []

        def note(self, message: str) -> None:
            self.notes.append(message)

    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    spec = JobSpec.model_validate_json(Path(spec_path).read_text())
    progress = Notes()
    started = time.monotonic()
    summary = run_job(spec, output_uri=out, progress=progress)
    wall = time.monotonic() - started
    Path(result).write_text(
        json.dumps(
            {
                "wall_s": wall,
                "rows_ok": summary.rows_ok,
                "rows_error": summary.rows_error,
                "status": summary.status,
                "job_id": summary.job_id,
                "notes": progress.notes,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "sim":
        asyncio.run(_serve_sim(SimConfig.model_validate_json(sys.argv[2])))
    elif sys.argv[1] == "job":
        _job_main(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown role {sys.argv[1]!r}: sim | job")
