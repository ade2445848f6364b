"""Fixtures: a fresh emulated cluster and the operator running against it, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kmock
import pytest

from tests.apiserver.emulator import OPERATOR_TOKEN, ApiServerEmulator
from tests.operator.operator_harness import Cluster, Operator, chart_grant, crd, declare


@pytest.fixture
def service_monitors() -> bool:
    return True


@pytest.fixture
def operator_namespaces() -> list[str] | None:
    """None runs the operator cluster-wide (with the chart's ClusterRole); a list of
    namespaces runs it namespaced, with exactly the chart's Role there."""
    return None


@pytest.fixture
async def cluster(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    service_monitors: bool,
    operator_namespaces: list[str] | None,
) -> AsyncIterator[Cluster]:
    grant = chart_grant(cluster_wide=operator_namespaces is None)
    async with ApiServerEmulator(grant=grant, crds=[crd()]) as emulator, kmock.Server(emulator):
        declare(emulator, service_monitors=service_monitors)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{emulator.url}'}}}}]\n"
            f"users: [{{name: kmock, user: {{token: {OPERATOR_TOKEN}}}}}]\n"
        )
        # The operator logs in the way it does outside a cluster: from a kubeconfig.
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        async with aiohttp.ClientSession() as session:
            yield Cluster(emulator, session)


@pytest.fixture
async def operator(
    cluster: Cluster, operator_namespaces: list[str] | None
) -> AsyncIterator[Operator]:
    runner = Operator(operator_namespaces)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
    # Every flow doubles as a check that the RBAC rules cover what the operator really does.
    assert cluster.emulator.forbidden == []
