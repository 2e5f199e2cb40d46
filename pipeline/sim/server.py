"""The simulator as an aiohttp application, and three ways to run it.

    async with SimServer(SimConfig(seed=1)) as sim:      # in a test or an async driver
        session.post(f"{sim.base_url}/chat/completions", json=...)

    base_url, stop = run_in_thread(config)                 # from synchronous code
    serve(config, "127.0.0.1", 8700)                       # the `tierline sim serve` command

Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
`POST /openai/deployments/{deployment}/chat/completions` (Azure, see `azure.py`),
`GET /v1/models`, `GET /stats`, `GET|POST /admin/config`, `POST /admin/reset-stats`;
OpenAI's files and batches (`/v1/files`, `/v1/batches`, see `openai_batches.py`) and
Anthropic's message batches (`/v1/messages/batches`, see `anthropic_batches.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web
from pydantic import ValidationError

from pipeline.sim import anthropic_batches, azure, openai_batches, openai_files
from pipeline.sim.handlers import STATE, Clock, CompletionHandler, SimState
from pipeline.sim.replay import ReplayDataError
from pipeline.sim.stats import SimStats
from pipeline.sim.wire import FORMATS
from schemas.sim import SimConfig

_OWNER = "tierline-sim"
# Batch bodies are large (OpenAI takes 200 MB input files, Anthropic 256 MB batches):
# aiohttp's 1 MiB default would answer 413 before the simulator could name its own limit.
MAX_BODY_BYTES = 1 << 30


def build_app(
    config: SimConfig, clock: Clock = time.monotonic, *, wall_clock: Clock = time.time
) -> web.Application:
    """The simulator app; `clock` drives rate limits, `wall_clock` timestamps."""
    state = SimState(config, clock, wall_clock)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = state
    completions = CompletionHandler(state)
    app.router.add_post("/v1/chat/completions", completions.route(FORMATS["openai"]))
    app.router.add_post("/v1/messages", completions.route(FORMATS["anthropic"]))
    azure.add_routes(app, completions)
    openai_files.add_routes(app)
    openai_batches.add_routes(app, completions)
    anthropic_batches.add_routes(app, completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/admin/config", _get_config)
    app.router.add_post("/admin/config", _set_config)
    app.router.add_post("/admin/reset-stats", _reset_stats)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].closing.set()  # ends hanging requests, so shutdown does not wait for them


async def _models(request: web.Request) -> web.Response:
    names = request.app[STATE].catalogue.names()
    if "anthropic-version" in request.headers:
        data = [
            {
                "type": "model",
                "id": n,
                "display_name": n,
                "created_at": "1970-01-01T00:00:00Z",
                "lifecycle": "active",  # required by the current SDK's ModelInfo
            }
            for n in sorted(names)
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return web.json_response(
            {"data": data, "has_more": False, "first_id": first, "last_id": last}
        )
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": _OWNER}
                for n in sorted(names)
            ],
        }
    )


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.snapshot())


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.model_dump(mode="json"))


async def _set_config(request: web.Request) -> web.Response:
    """Replace the behaviour config; the body is a full `SimConfig` as JSON."""
    state = request.app[STATE]
    try:
        config = SimConfig.model_validate_json(await request.read())
        state.apply(config)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False))
        return web.json_response(
            {"error": {"type": "invalid_config", "details": errors}}, status=400
        )
    except ReplayDataError as exc:
        return web.json_response(
            {"error": {"type": "invalid_config", "message": str(exc)}}, status=400
        )
    return web.json_response(config.model_dump(mode="json"))


async def _reset_stats(request: web.Request) -> web.Response:
    request.app[STATE].stats.reset()
    return web.json_response({"ok": True})


class SimServer:
    """The simulator on a loopback port; `async with` starts and stops it."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.app = build_app(config or SimConfig(), clock)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self.root_url = ""

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, `<root_url>/v1`."""
        return f"{self.root_url}/v1"

    @property
    def stats(self) -> SimStats:
        return self.app[STATE].stats

    @property
    def config(self) -> SimConfig:
        return self.app[STATE].config

    def reconfigure(self, config: SimConfig) -> None:
        """Swap the behaviour in-process (what `POST /admin/config` does)."""
        self.app[STATE].apply(config)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0 = a free port); returns `base_url`."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        # handler_cancellation: a client that gives up ends its request here too.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.root_url = f"http://{_url_host(bound_host)}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class _Thread:
    ready: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    error: BaseException | None = None
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event | None = None


def run_in_thread(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock = time.monotonic,
) -> tuple[str, Callable[[], None]]:
    """Run the simulator on its own event loop in a daemon thread: (base_url, stop).

    `clock` drives rate limits, caches and batches (a test's fake clock moves them)."""
    box = _Thread()

    async def main() -> None:
        box.loop, box.stop = asyncio.get_running_loop(), asyncio.Event()
        sim = SimServer(config, clock=clock)
        box.url = await sim.start(host, port)
        try:
            box.ready.set()
            await box.stop.wait()
        finally:
            await sim.stop()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller below
            box.error = exc
        finally:
            box.ready.set()

    thread = threading.Thread(target=target, name="tierline-sim", daemon=True)
    thread.start()
    box.ready.wait()
    if box.error is not None:
        raise box.error

    def stop() -> None:
        if box.loop is not None and box.stop is not None and thread.is_alive():
            box.loop.call_soon_threadsafe(box.stop.set)
        thread.join()

    return box.url, stop


def serve(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8700,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C); `on_ready` gets the base URL once listening."""

    async def main() -> None:
        sim = SimServer(config)
        url = await sim.start(host, port)
        if on_ready is not None:
            on_ready(url)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops it even when it was started with SIGINT ignored or blocked (a
        # parent's disposition and mask are inherited: nohup, some supervisors, a test
        # runner's threads).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
