"""A recognisable fake key must appear nowhere: outputs, summary, logs, error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from pipeline.engine.driver import run_job
from pipeline.providers.registry import create
from pipeline.sim import SimConfig, run_in_thread
from schemas.job import Timeouts
from tests.conftest import CANARY_KEYS
from tests.integration.helpers import spec_for, write_shards

pytestmark = pytest.mark.integration

GOOD = CANARY_KEYS["TIERLINE_CANARY_GOOD"]
BAD = CANARY_KEYS["TIERLINE_CANARY_BAD"]


def _hits(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n.decode()}" for n in needles if n in data]
    return found


def test_keys_never_land_anywhere(
    tmp_path: Path, ray_local: None, capfd: pytest.CaptureFixture[str]
) -> None:
    url, stop = run_in_thread(SimConfig(require_api_key=True, api_keys=[GOOD]))
    try:
        write_shards(tmp_path / "in", shards=1, rows=40)
        spec = spec_for(
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            providers={
                # The first answers 401 (a wrong key): its error text must not carry the key.
                "wrong": {"kind": "openai", "base_url": url, "api_key_env": "TIERLINE_CANARY_BAD"},
                "right": {"kind": "openai", "base_url": url, "api_key_env": "TIERLINE_CANARY_GOOD"},
            },
            tiers={
                "cheap": ["wrong/gpt-4o-mini", "right/gpt-4o-mini"],
                "mid": ["right/claude-3-5-haiku"],
                "flagship": ["right/gpt-4o"],
            },
        )
        summary = run_job(spec)
    finally:
        stop()
    assert summary.status == "complete" and summary.rows_ok > 0
    needles = [GOOD.encode(), BAD.encode()]
    assert _hits(tmp_path, needles) == []
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    assert _hits(session / "logs", needles) == []
    captured = capfd.readouterr()
    assert GOOD not in captured.out + captured.err and BAD not in captured.out + captured.err
    # What travels through Ray and into reprs names the variable, never the value.
    assert "TIERLINE_CANARY_GOOD" in spec.model_dump_json() and GOOD not in spec.model_dump_json()
    adapter = create(
        "openai",
        name="right",
        base_url=url,
        api_key_env="TIERLINE_CANARY_GOOD",
        timeouts=Timeouts(),
    )
    assert GOOD not in repr(adapter)
