"""The chart's pre-upgrade hook as it runs: `chatservice-operator --apply-crd` with exactly the
hook's rendered ClusterRole updates the installed CRD in place (same object, new schema)."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import aiohttp
import kmock
import yaml

from tests.apiserver.emulator import OPERATOR_TOKEN, ApiServerEmulator, Grant
from tests.chart.rendering import render_values
from tests.operator.operator_harness import crd, declare

OPERATOR = Path(sys.executable).parent / "chatservice-operator"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"


def hook_grant() -> Grant:
    (role,) = [
        obj
        for source, obj in render_values({}).objects
        if source.endswith("crd-upgrade.yaml") and obj["kind"] == "ClusterRole"
    ]
    return Grant(tuple(role["rules"]), None)


async def test_the_upgrade_hook_applies_the_new_crd_in_place(tmp_path: Path) -> None:
    async with ApiServerEmulator(grant=hook_grant()) as emulator, kmock.Server(emulator):
        declare(emulator, service_monitors=False)
        url = f"{emulator.url}/apis/{CRDS}"
        installed = copy.deepcopy(crd())
        del installed["spec"]["versions"][0]["additionalPrinterColumns"]  # an older chart's CRD
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=installed) as response,
        ):
            assert response.status < 300
        uid = emulator.objects[kmock.resource(CRDS), None, installed["metadata"]["name"]]
        uid = uid["metadata"]["uid"]

        new_crd = tmp_path / "crd.yaml"
        new_crd.write_text(yaml.safe_dump(crd()))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "hook",
                    "contexts": [{"name": "hook", "context": {"cluster": "c", "user": "u"}}],
                    "clusters": [{"name": "c", "cluster": {"server": str(emulator.url)}}],
                    "users": [{"name": "u", "user": {"token": OPERATOR_TOKEN}}],
                }
            )
        )
        process = await asyncio.create_subprocess_exec(
            str(OPERATOR),
            f"--apply-crd={new_crd}",
            env={"KUBECONFIG": str(kubeconfig), "PATH": str(OPERATOR.parent)},
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()

        stored = emulator.objects[kmock.resource(CRDS), None, installed["metadata"]["name"]]
        assert stored["metadata"]["uid"] == uid, "updated in place, never deleted and recreated"
        assert (
            stored["spec"]["versions"][0]["additionalPrinterColumns"]
            == (crd()["spec"]["versions"][0]["additionalPrinterColumns"])
        )
        assert emulator.forbidden == [], "the hook's ClusterRole grants exactly what it does"
        assert not any(r.method == "DELETE" for r in emulator)
