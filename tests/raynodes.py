"""A real Ray cluster started with `ray start`, as an operator starts one, for the tests
that need Ray's own servers (the Jobs API on the dashboard, separate raylets).

    nodes = RayNodes.start_head(num_cpus=2)      # `ray start --head --block` on free ports
    nodes.dashboard                               # http://127.0.0.1:PORT (Jobs API)
    worker = nodes.add_worker(num_cpus=2)        # `ray start --address HEAD --block`
    subprocess.run(cmd, env=nodes.client_env)    # a driver joining it (RAY_ADDRESS)
    nodes.kill(worker)                           # the node's processes, SIGKILL
    nodes.stop()                                 # everything this object started, only that

Other Ray instances may run on the same machine (the test session's own, other people's),
so every port is a free one, the temp dir is private, and stopping never uses `ray stop`
(which stops every Ray of the user): each node runs in its own session, and stopping
signals the processes of those sessions and the job drivers whose working folder lies in
the private temp dir. Token authentication is on as Ray sets it up by default: a token
in `$HOME/.ray/auth_token` (a private HOME) makes `ray start --head` turn it on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_ip() -> str:
    """The address nodes use when several join: `ray start --address` refuses loopback
    (Ray resolves 127.0.0.1 to the machine's address once clusters are enabled), so the
    nodes use the machine's own address; nothing leaves the machine."""
    from ray.util import get_node_ip_address

    return str(get_node_ip_address())


@dataclass
class RayNodes:
    root: Path
    home: Path
    env: dict[str, str]
    gcs: str
    dashboard: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def token_file(self) -> Path:
        return self.home / ".ray" / "auth_token"

    @classmethod
    def start_head(
        cls, *, num_cpus: int = 2, multi_node: bool = False, path_prefix: str = ""
    ) -> RayNodes:
        """The head; `path_prefix` goes first on the cluster's PATH, from which folders
        holding a `tierline` script are dropped (a cluster has the package, not the script)."""
        # Short: Ray's unix socket paths live under it (about 107 characters at most).
        root = Path(tempfile.mkdtemp(prefix="tlray-"))
        home = root / "home"
        home.mkdir()
        env = {
            **os.environ,
            "HOME": str(home),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": os.pathsep.join(
                [path_prefix] * bool(path_prefix)
                + [
                    d
                    for d in os.environ["PATH"].split(os.pathsep)
                    if not shutil.which("tierline", path=d)
                ]
            ),
            # Loopback for a single node; the machine's address when workers will join.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if multi_node else "0",
        }
        # The test session's own Ray settings must not leak into this cluster.
        for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(var, None)
        # The same step as on a fresh machine: `ray get-auth-token --generate` writes
        # ~/.ray/auth_token, and a head started afterwards requires it.
        subprocess.run(
            [*RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True
        )
        host = node_ip() if multi_node else "127.0.0.1"
        gcs_port, dash_port, client_port, *others = free_ports(3 + len(PORT_FLAGS))
        nodes = cls(root, home, env, f"{host}:{gcs_port}", f"http://127.0.0.1:{dash_port}")
        args = [
            "--head",
            f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={client_port}",
        ]
        nodes._start(args, num_cpus, host, others)
        nodes._wait_for_dashboard()
        return nodes

    @property
    def client_env(self) -> dict[str, str]:
        """The environment of a process that joins this cluster (a node, a driver run with
        RAY_ADDRESS): only `ray start --head` turns token authentication on by itself when
        it finds a token; a joining `ray start --address` does not, and the head refuses it."""
        return {**self.env, "RAY_ADDRESS": self.gcs, "RAY_AUTH_MODE": "token"}

    def add_worker(self, *, num_cpus: int = 2) -> subprocess.Popen[bytes]:
        host = self.gcs.rsplit(":", 1)[0]
        ports = free_ports(len(PORT_FLAGS))
        proc = self._start([f"--address={self.gcs}"], num_cpus, host, ports, self.client_env)
        deadline = time.monotonic() + 60
        while len(self.alive_nodes()) < len(self.procs):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"worker node did not join: {self.log_tail()}")
            time.sleep(0.5)
        return proc

    def _start(
        self,
        args: list[str],
        num_cpus: int,
        host: str,
        ports: list[int],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        cmd = [
            *RAY,
            "start",
            "--block",
            *args,
            f"--node-ip-address={host}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={self.root / 'ray'}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            *(f"{flag}={port}" for flag, port in zip(PORT_FLAGS, ports, strict=True)),
        ]
        with open(self.root / f"node-{n}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def _wait_for_dashboard(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray start --head ended: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # answering (401 when it wants a token): up
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"dashboard never answered: {self.log_tail()}")

    def alive_nodes(self) -> list[str]:
        """Ids of the nodes the cluster counts as alive (Ray's state API)."""
        doc = self.get("/api/v0/nodes?limit=100")
        return [n["node_id"] for n in doc["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def get(self, path: str) -> Any:
        """A JSON answer of the dashboard, with the cluster's token."""
        headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}
        req = urllib.request.Request(self.dashboard + path, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.load(answer)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for log in sorted(self.root.glob("node-*.log")):
            out += log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Every process of one node (its session), as when its machine goes away."""
        for pid in _session_pids(proc.pid):
            _signal(pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        pids = {pid for p in self.procs for pid in _session_pids(p.pid)} | self._drivers()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
        for pid in pids | {pid for p in self.procs for pid in _session_pids(p.pid)}:
            _signal(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def _drivers(self) -> set[int]:
        """Job drivers run in their own session, in a working folder under our temp dir."""
        return {pid for pid, proc in _processes() if _read(proc, "cwd").startswith(str(self.root))}


def _session_pids(sid: int) -> set[int]:
    # Field 6 of stat is the session id; the command name (field 2) may hold spaces.
    found = set()
    for pid, proc in _processes():
        fields = _read(proc, "stat").rsplit(")", 1)[-1].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            found.add(pid)
    return found


def _processes() -> Iterator[tuple[int, Path]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name), entry


def _read(proc: Path, what: str) -> str:
    """/proc/PID/stat's text or /proc/PID/cwd's target; "" once the process is gone."""
    try:
        return os.readlink(proc / what) if what == "cwd" else (proc / what).read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
