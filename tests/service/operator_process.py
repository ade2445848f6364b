"""The real operator process (`chatservice-operator`) against kmock's API-server emulation,
for the service tests that scrape it beside a real gunicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import kmock

from tests.apiserver.emulator import OPERATOR_TOKEN, ApiServerEmulator
from tests.operator.operator_harness import Cluster, chart_grant, crd, declare
from tests.ports import free_port

OPERATOR = Path(sys.executable).parent / "chatservice-operator"


@asynccontextmanager
async def emulated_cluster(directory: Path) -> AsyncIterator[tuple[Cluster, Path]]:
    """kmock's API server with the chart's RBAC, and a kubeconfig that logs in to it."""
    grant = chart_grant(cluster_wide=True)
    async with ApiServerEmulator(grant=grant, crds=[crd()]) as emulator, kmock.Server(emulator):
        declare(emulator, service_monitors=True)
        kubeconfig = directory / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{emulator.url}'}}}}]\n"
            f"users: [{{name: kmock, user: {{token: {OPERATOR_TOKEN}}}}}]\n"
        )
        async with aiohttp.ClientSession() as session:
            yield Cluster(emulator, session), kubeconfig


@asynccontextmanager
async def operator_process(kubeconfig: Path, metrics_port: int) -> AsyncIterator[None]:
    """The operator, once its liveness endpoint answers (Kopf runs, its handlers are loaded)."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    process = await asyncio.create_subprocess_exec(
        str(OPERATOR),
        "--all-namespaces",
        "--liveness",
        liveness,
        "--metrics-port",
        str(metrics_port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    try:
        await _wait_alive(liveness, process)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _wait_alive(liveness: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while process.returncode is None:
            try:
                async with session.get(liveness) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the operator exited with {process.returncode} before it was alive")
