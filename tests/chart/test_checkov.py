"""Misconfiguration scan of the rendered chart with checkov (offline: --skip-download).

Every finding must be listed, with its reason, in checkov-skips.yaml; a listed skip that no
longer matches a finding fails too, so the file stays the exact list of what is accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .rendering import REPO_ROOT, SCENARIOS, Scenario, render

SKIPS_FILE = Path(__file__).resolve().parent / "checkov-skips.yaml"
# --skip-download: offline, no platform calls; json: findings are compared, not eyeballed.
SCAN_OPTIONS = ["--skip-download", "--output", "json", "--quiet", "--compact"]
# Made by `make install` from checkov-requirements.txt; a test never installs anything.
CHECKOV_VENV = Path(os.environ.get("CHECKOV_VENV", REPO_ROOT / ".venv-checkov"))


@pytest.fixture(scope="session")
def checkov() -> str:
    executable = CHECKOV_VENV / "bin" / "checkov"
    if executable.exists():
        return str(executable)
    on_path = shutil.which("checkov")
    if on_path:
        return on_path
    pytest.fail(
        f"checkov is not installed: `make install` puts it in {CHECKOV_VENV.name}",
        pytrace=False,
    )


def accepted(scenario: Scenario) -> set[tuple[str, str]]:
    entries: list[dict[str, Any]] = yaml.safe_load(SKIPS_FILE.read_text())
    pairs = set()
    for entry in entries:
        assert entry.get("reason", "").strip(), f"{entry['check']} is skipped without a reason"
        if scenario.name not in entry.get("except", []):
            pairs |= {(entry["check"], resource) for resource in entry["resources"]}
    return pairs


def findings(checkov: str, directory: Path, objects: dict[str, str]) -> set[tuple[str, str]]:
    """(check id, "Kind/name") of each failed check; `objects` maps file name to Kind/name."""
    result = subprocess.run(
        [checkov, "--directory", str(directory), "--framework", "kubernetes", *SCAN_OPTIONS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: there are findings
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    reports = report if isinstance(report, list) else [report]
    # One object per file: checkov's resource ids of pod templates carry every pod label, so
    # the file a finding is in names its object more reliably.
    return {
        (check["check_id"], objects[Path(check["file_path"]).name])
        for part in reports
        for check in part.get("results", {}).get("failed_checks", [])
    }


def write_objects(manifests: list[dict[str, Any]], directory: Path) -> dict[str, str]:
    objects = {}
    for index, obj in enumerate(manifests):
        file_name = f"{index:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        (directory / file_name).write_text(yaml.safe_dump(obj))
        objects[file_name] = f"{obj['kind']}/{obj['metadata']['name']}"
    return objects


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_rendered_chart_passes_checkov(checkov: str, scenario: Scenario, tmp_path: Path) -> None:
    objects = write_objects(render(scenario).manifests(), tmp_path)
    found = findings(checkov, tmp_path, objects)
    allowed = accepted(scenario)
    unexplained = found - allowed
    assert not unexplained, f"checkov findings not in {SKIPS_FILE.name}: {sorted(unexplained)}"
    present = set(objects.values())
    stale = {(check, res) for check, res in allowed - found if res in present}
    assert not stale, f"skips in {SKIPS_FILE.name} that match no finding: {sorted(stale)}"


def test_checkov_reports_a_misconfiguration(checkov: str, tmp_path: Path) -> None:
    # Guards the test above against a scan that silently checks nothing.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "careless", "namespace": "chatservice"},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }
    objects = write_objects([pod], tmp_path)
    assert ("CKV_K8S_16", "Pod/careless") in findings(checkov, tmp_path, objects)
