"""yamllint on the YAML files users edit or copy: a duplicated key in values.yaml would silently
replace a default, and YAML's parser does not complain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .rendering import CHART_DIR, REPO_ROOT

CONFIG = Path(__file__).resolve().parent / "yamllint.yaml"
FILES = [
    CHART_DIR / "values.yaml",
    CHART_DIR / "Chart.yaml",
    *sorted((Path(__file__).resolve().parent / "values").glob("*.yaml")),
    Path(__file__).resolve().parent / "checkov-skips.yaml",
    REPO_ROOT / ".pre-commit-config.yaml",
    *sorted((REPO_ROOT / "tools" / "manifests").glob("*.yaml")),
]


def yamllint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(CONFIG), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_yaml_files_are_clean() -> None:
    result = yamllint(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_duplicated_key_is_caught(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("chatService:\n  replicas: 2\n  replicas: 3\n")
    result = yamllint(values)
    assert result.returncode != 0
    assert "key-duplicates" in result.stdout
