"""Fixtures: a fresh emulated cluster and the operator running against it, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kmock
import pytest
from operator_harness import Cluster, ClusterEmulator, Operator, declare


@pytest.fixture
def service_monitors() -> bool:
    return True


@pytest.fixture
async def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service_monitors: bool
) -> AsyncIterator[Cluster]:
    async with ClusterEmulator() as emulator, kmock.Server(emulator):
        declare(emulator, service_monitors=service_monitors)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{emulator.url}'}}}}]\n"
            "users: [{name: kmock, user: {token: test-token}}]\n"
        )
        # The operator logs in the way it does outside a cluster: from a kubeconfig.
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        async with aiohttp.ClientSession() as session:
            yield Cluster(emulator, session)


@pytest.fixture
async def operator(cluster: Cluster) -> AsyncIterator[Operator]:
    runner = Operator()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
    # Every flow doubles as a check that the RBAC rules cover what the operator really does.
    assert cluster.unpermitted_requests() == []
