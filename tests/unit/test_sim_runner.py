"""Running the simulator: async context, background thread, blocking `serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from pipeline.sim import SimConfig, SimServer, run_in_thread

REPO = Path(__file__).resolve().parents[2]
# Loopback only: ignore any proxy set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello simulator"}]}


def post_json(url: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _DIRECT.open(request, timeout=5) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def test_sim_server_serves_on_a_free_loopback_port() -> None:
    async def go() -> None:
        async with SimServer(SimConfig()) as sim, aiohttp.ClientSession() as session:
            assert sim.base_url.startswith("http://127.0.0.1:")
            assert sim.base_url == sim.root_url + "/v1"
            async with session.post(f"{sim.base_url}/chat/completions", json=BODY) as resp:
                body = await resp.json()
            assert body["choices"][0]["message"]["content"] == "hello simulator"
            async with session.get(f"{sim.root_url}/stats") as resp:
                assert (await resp.json())["total"]["ok"] == 1
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session:
                await session.get(f"{sim.root_url}/stats")

    asyncio.run(go())


def test_run_in_thread_serves_synchronous_callers_until_stopped() -> None:
    base_url, stop = run_in_thread(SimConfig(seed=3))
    try:
        body = post_json(f"{base_url}/chat/completions", BODY)
        assert body["object"] == "chat.completion"
    finally:
        stop()
    stop()  # a second stop is harmless
    with pytest.raises(urllib.error.URLError):
        post_json(f"{base_url}/chat/completions", BODY)


def test_sim_serve_prints_its_url_and_stops_on_interrupt() -> None:
    # `tierline sim serve`, as `python -m pipeline.cli` (the CLI is what prints the URL).
    cmd = ["-m", "pipeline.cli", "sim", "serve", "--port", "0"]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, *cmd], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert post_json(f"{url}/chat/completions", BODY)["model"] == "gpt-4o-mini"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
