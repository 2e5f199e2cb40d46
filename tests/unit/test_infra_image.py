"""The image: pinned Ray base that the package's own Ray range admits, non-root, nothing secret
in it, and a build context that lets in what the Dockerfile copies and nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "infra" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
IGNORE = DOCKER / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = pending + line
        pending = ""
        op, _, args = full.strip().partition(" ")
        out.append((op.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def base_images() -> list[str]:
    return [args.split()[0] for op, args in instructions() if op == "FROM"]


def test_base_image_pinned_and_one_ray() -> None:
    images = base_images()
    assert images, "no FROM"
    for image in images:
        assert re.fullmatch(r"rayproject/ray:\d+\.\d+\.\d+-py3\d+(-cpu)?", image), image
    assert len(set(images)) == 1, "the wheel is built on the image it runs on"


def test_ray_in_the_image_satisfies_the_package() -> None:
    (image,) = set(base_images())
    ray_version = Version(image.split(":")[1].split("-")[0])
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray,) = [Requirement(d) for d in deps if Requirement(d).name == "ray"]
    assert ray_version in ray.specifier, f"image Ray {ray_version} outside {ray.specifier}"
    python = image.split("-py3")[1].split("-")[0]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(f"3.{python}") >= Version(requires.removeprefix(">="))


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in instructions() if op == "USER"]
    assert users, "no USER: the image would run as whatever the base says"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric, not root"
    last_from = max(i for i, (op, _) in enumerate(instructions()) if op == "FROM")
    assert any(op == "USER" for op, _ in instructions()[last_from:]), "USER in the final stage"


def test_no_secrets_in_the_image() -> None:
    secretish = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AWS_", re.I)
    for op, args in instructions():
        if op in {"ENV", "ARG"}:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]:
                assert not secretish.search(name), f"{op} {name}: secrets come at run time"
        assert op != "ADD", "ADD fetches URLs and unpacks archives; COPY says what it does"
        if op == "COPY":
            assert ".env" not in args and ".aws" not in args, args


def test_install_keeps_the_image_ray() -> None:
    run = " ".join(args for op, args in instructions() if op == "RUN")
    assert "--constraint" in run and "ray.__version__" in run, "pip must not move Ray"
    assert "--no-cache-dir" in run


# --- the build context ------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def context_includes(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path or one of its
    parent folders decides; `!` lets it back in."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for line in IGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern_regex(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            included = negate
    return included


def test_dockerignore_matcher() -> None:
    assert _pattern_regex("**/__pycache__").fullmatch("a/b/__pycache__")
    assert _pattern_regex("**/*.py[cod]").fullmatch("x.pyc")
    assert not _pattern_regex("*").fullmatch("a/b")


def test_copied_sources_are_in_the_context() -> None:
    sources = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            words = [w for w in args.split() if not w.startswith("--")]
            sources += [w.rstrip("/") for w in words[:-1]]
    assert {"pyproject.toml", "README.md", "pipeline", "jobs", "schemas"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), src
        assert context_includes(src), f"{src} is copied but .dockerignore leaves it out"
    assert context_includes("pipeline/cli/app.py")
    assert context_includes("jobs/examples/data/tickets/part-00000.parquet")  # package data


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tierline-out/x/summary.json",
        "tests/conftest.py",
        "infra/kuberay/raycluster.yaml",
        "pipeline/__pycache__/cli.cpython-311.pyc",
        "secrets.key",
        ".aws/credentials",
    ],
)
def test_context_leaves_out(path: str) -> None:
    assert not context_includes(path)


def test_compose_builds_this_dockerfile_from_the_repo_root() -> None:
    compose = yaml.safe_load((REPO / "infra" / "local" / "compose.yaml").read_text())
    build = compose["services"]["ray-head"]["build"]
    context = (REPO / "infra" / "local" / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
