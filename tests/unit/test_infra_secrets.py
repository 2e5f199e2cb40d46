"""No credential is written anywhere under infra/. Every file is scanned, whatever its type;
the only credentials allowed are the well-known local-development placeholders of MinIO and
moto, and only under infra/local/. The detectors are checked against planted samples first,
so a scan that finds nothing means something."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
LOCAL = INFRA / "local"
LOCAL_PLACEHOLDERS = {"minioadmin", "testing"}

# Assembled at run time so this file does not itself look like it holds keys.
_SK, _AK, _AS = "sk" + "-", "AK" + "IA", "AS" + "IA"
DETECTORS: dict[str, re.Pattern[str]] = {
    "OpenAI/Anthropic-style key": re.compile(_SK + r"(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{16,}"),
    "AWS access key id": re.compile(rf"\b(?:{_AK}|{_AS})[0-9A-Z]{{16}}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "long secret value": re.compile(
        r"(?i)(?:api[_-]?key|secret|token|password)[\"']?[ \t]*[:=][ \t]*[\"']?"
        r"[A-Za-z0-9+_=-][A-Za-z0-9/+_=-]{23,}"
    ),
}
# A name that says password or secret, given a plain value on the same line.
_VALUE = r"[\"']?[ \t]*[:=][ \t]*[\"']?([^\s\"'`,{}\[\]]+)"
AWS_SECRET = re.compile(r"(?i)aws_secret_access_key" + _VALUE)
PASSWORDISH = re.compile(r"(?i)\b[a-z_]*(?:password|secret)[a-z_]*" + _VALUE)


def infra_files() -> list[Path]:
    files = sorted(p for p in INFRA.rglob("*") if p.is_file())
    assert len(files) >= 15
    return files


def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    "sample",
    [
        _SK + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t",
        _SK + "ant-api03-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv",
        _AK + "IOSFODNN7" + "EXAMPLE",
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "api_key: " + "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4",
    ],
)
def test_detectors_catch_planted_samples(sample: str) -> None:
    assert any(d.search(f"x: {sample}\n") for d in DETECTORS.values()), sample


def test_detectors_leave_references_alone() -> None:
    fine = [
        "api_key_env: OPENAI_API_KEY",
        "secretKeyRef: {name: tierline-provider-keys, key: OPENAI_API_KEY}",
        "OPENAI_API_KEY: ${OPENAI_API_KEY:-}",
    ]
    for line in fine:
        assert not any(d.search(line) for d in DETECTORS.values()), line


@pytest.mark.parametrize("path", infra_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_credentials_in(path: Path) -> None:
    text = text_of(path)
    for what, detector in DETECTORS.items():
        m = detector.search(text)
        assert m is None, f"{path.relative_to(REPO)}: looks like a {what}: {m and m[0][:12]}..."
    for m in [*AWS_SECRET.finditer(text), *PASSWORDISH.finditer(text)]:
        value = m[1]
        if value.startswith(("${", "$$", "$(")) or re.fullmatch(r"[A-Z_]+", value):
            continue  # a reference to a variable, not a value
        assert path.is_relative_to(LOCAL) and value in LOCAL_PLACEHOLDERS, (
            f"{path.relative_to(REPO)}: {m[0]!r}: only local placeholders "
            f"({sorted(LOCAL_PLACEHOLDERS)}) under infra/local/"
        )


def test_compose_takes_provider_keys_from_the_callers_environment() -> None:
    compose = yaml.safe_load((LOCAL / "compose.yaml").read_text())
    seen = 0
    for name, service in compose["services"].items():
        for var, value in (service.get("environment") or {}).items():
            if re.search(r"API_KEY|TOKEN", var):
                assert value == f"${{{var}:-}}", f"{name}.{var}: interpolate, never write a key"
                seen += 1
            if re.search(r"SECRET|PASSWORD|ACCESS_KEY", var):
                assert value in LOCAL_PLACEHOLDERS, f"{name}.{var}"
    assert seen >= 2
