"""LiteLLM's proxy, run from its own venv (`make gateway`) on a loopback port, in front of
an OpenAI-compatible upstream (the simulator).

    with LiteLLMProxy(upstream="http://127.0.0.1:8700/v1", upstream_key="k",
                      models=["gpt-4o-mini"], master_key=key, folder=tmp_path) as proxy:
        ...  # an OpenAI client at proxy.base_url with `key` as its bearer token

It starts offline: no database, no telemetry, the packaged model price map instead of
the one it would download, no `.env` read, and an environment of its own (no proxy
variables, no cloud credentials of the test run).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

REPO = Path(__file__).resolve().parents[2]
LITELLM = REPO / ".venv-gateway" / "bin" / "litellm"
READY_TIMEOUT_S = 60.0  # about 7 s on an idle 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiteLLMProxy:
    def __init__(
        self,
        *,
        upstream: str,
        upstream_key: str,
        models: list[str],
        master_key: str,
        folder: Path,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.folder = folder
        self.log = folder / "litellm.log"
        self.master_key = master_key
        config = {
            "model_list": [
                {
                    "model_name": model,
                    "litellm_params": {
                        "model": f"openai/{model}",
                        "api_base": upstream,
                        "api_key": upstream_key,
                    },
                }
                for model in models
            ],
            # One retry loop (tierline's), so the upstream sees each attempt once.
            "litellm_settings": {"telemetry": False, "num_retries": 0, "request_timeout": 30},
            "router_settings": {"num_retries": 0, "disable_cooldowns": True},
        }
        self.config = folder / "litellm.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MODE": "PRODUCTION",  # reads no .env file
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "DISABLE_ADMIN_UI": "True",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def __enter__(self) -> LiteLLMProxy:
        command = [str(LITELLM), "--config", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as one below
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.port}/health/readiness"
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"litellm exited {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"litellm not ready within {READY_TIMEOUT_S:g}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
