"""Operator reconcile latency and idle API traffic, measured on kmock with the real Kopf runtime.

    .venv/bin/python tools/bench/operator_latency.py [--samples 20] [--idle-seconds 310]

Prints: ChatService created -> Job created, Job succeeded -> Deployment created (first install)
and -> Deployment patched (image change), as median/p95/max over the samples; then the API
requests the operator makes while one ChatService sits Ready, per minute, over a window that
spans at least one drift pass (default interval 300 s), with a breakdown by request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

# The operator tests' harness lives in the `tests` package at the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("CHATSERVICE_OPERATOR_DRIFT_SECONDS", "300")

import aiohttp
import kmock
import kopf

from chatservice_operator.identity import job_name
from tests.apiserver.emulator import ApiServerEmulator
from tests.operator.operator_harness import (
    CHATSERVICES,
    DEPLOYMENTS,
    JOBS,
    Cluster,
    Operator,
    declare,
    eventually,
)
from tests.operator.operator_specs import NEW, OLD, body, chatservice


class TimedEmulator(ApiServerEmulator):
    """Stamps every request on arrival, before any handling, and wakes whoever waits for one."""

    arrivals: list[tuple[float, Any]]
    arrived: asyncio.Condition

    async def _handle(self, request: Any) -> Any:
        self.arrivals.append((time.perf_counter(), request))
        async with self.arrived:
            self.arrived.notify_all()
        return await super()._handle(request)


async def wait_arrival(emulator: TimedEmulator, method: str, path: str, after: float) -> float:
    """When the first such request arrived after `after` (waiting for it without polling, so
    that this script does not compete with the operator's thread for the interpreter)."""

    def found() -> float | None:
        for stamp, request in reversed(emulator.arrivals):
            if stamp < after:
                return None
            if request.method == method and path in request.url.path:
                earliest: float = stamp
                for earlier, other in emulator.arrivals:
                    if earlier >= after and other.method == method and path in other.url.path:
                        earliest = earlier
                        break
                return earliest
        return None

    async with asyncio.timeout(30), emulator.arrived:
        await emulator.arrived.wait_for(lambda: found() is not None)
    stamp = found()
    assert stamp is not None
    return stamp


def named(name: str, image: str) -> dict[str, Any]:
    resource: dict[str, Any] = body(image=image)
    resource["metadata"]["name"] = name
    return resource


def job_of(name: str, image: str) -> str:
    return job_name(chatservice(image=image).model_copy(update={"name": name}))


def summary(label: str, samples: list[float]) -> None:
    if not samples:
        return
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    print(
        f"{label:<44} median {statistics.median(ms):7.1f} ms   "
        f"p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"
    )


async def measure(samples: int, idle_seconds: float) -> None:
    created_to_job: list[float] = []
    succeeded_to_create: list[float] = []
    succeeded_to_patch: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        emulator = TimedEmulator()
        emulator.arrivals = []
        emulator.arrived = asyncio.Condition()
        async with emulator, kmock.Server(emulator), aiohttp.ClientSession() as session:
            declare(emulator, service_monitors=True)
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
                "contexts: [{name: k, context: {cluster: k, user: k}}]\n"
                f"clusters: [{{name: k, cluster: {{server: '{emulator.url}'}}}}]\n"
                "users: [{name: k, user: {token: t}}]\n"
            )
            os.environ["KUBECONFIG"] = str(kubeconfig)
            cluster = Cluster(emulator, session)
            operator = Operator()
            await operator.start()
            try:
                for index in range(samples):
                    name = f"bench-{index}"
                    start = time.perf_counter()
                    await cluster.create(CHATSERVICES, named(name, OLD))
                    job = job_of(name, OLD)
                    created_to_job.append(
                        await wait_arrival(emulator, "POST", "/jobs", start) - start
                    )
                    done = time.perf_counter()
                    await cluster.complete_job(job)
                    created = await wait_arrival(emulator, "POST", "/deployments", done)
                    succeeded_to_create.append(created - done)
                    await cluster.roll_out(f"{name}-stable")
                    await cluster.patch(CHATSERVICES, name, {"spec": {"image": NEW}})
                    new_job = job_of(name, NEW)
                    await eventually(partial(cluster.get, JOBS, new_job))
                    done = time.perf_counter()
                    await cluster.complete_job(new_job)
                    stable = f"/deployments/{name}-stable"
                    patched = await wait_arrival(emulator, "PATCH", stable, done)
                    succeeded_to_patch.append(patched - done)
                    await cluster.roll_out(f"{name}-stable")
                    await cluster.delete(CHATSERVICES, name)
                    for resource in (DEPLOYMENTS, JOBS):
                        for child in cluster.names(resource):
                            await cluster.delete(resource, child)
                    # kmock matches each request against its whole request log (about 0.1 ms
                    # per logged request here): without this, later samples would measure that.
                    emulator._requests.clear()

                # One ChatService, Ready, nothing happening: what does the operator still ask?
                await cluster.create(CHATSERVICES, named("idle", NEW))
                await eventually(lambda: cluster.get(JOBS, job_of("idle", NEW)))
                await cluster.complete_job(job_of("idle", NEW))
                await eventually(lambda: cluster.get(DEPLOYMENTS, "idle-stable"))
                await cluster.roll_out("idle-stable")
                await eventually(
                    lambda: (
                        (cluster.get(CHATSERVICES, "idle") or {}).get("status", {}).get("phase")
                        == "Ready"
                    )
                )
                await asyncio.sleep(2)  # let the last events settle
                window_start = time.perf_counter()
                await asyncio.sleep(idle_seconds)
                idle = [
                    request
                    for stamp, request in emulator.arrivals
                    if stamp >= window_start
                    # the operator's own client and Kopf's, not this script's
                    and "Python" not in request.headers.get("User-Agent", "")
                ]
            finally:
                await operator.stop()

    summary("ChatService created -> Job created", created_to_job)
    summary("Job succeeded -> Deployment created", succeeded_to_create)
    summary("Job succeeded -> Deployment patched", succeeded_to_patch)
    per_minute = len(idle) / (idle_seconds / 60)
    print(
        f"\nIdle, one Ready ChatService: {len(idle)} API requests in {idle_seconds:.0f} s "
        f"= {per_minute:.2f} per minute (drift interval "
        f"{os.environ['CHATSERVICE_OPERATOR_DRIFT_SECONDS']} s)"
    )
    for (method, path), count in sorted(
        Counter((str(r.method.value), r.url.path) for r in idle).items()
    ):
        print(f"  {count:3d}  {method:6s} {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=310)
    parser.add_argument(
        "--bookmarks",
        action="store_true",
        help="behave as with a real API server, whose watch bookmarks keep streams open: kmock "
        "sends none, so Kopf reconnects (and re-lists) every 70 s of silence",
    )
    args = parser.parse_args()
    if args.bookmarks:

        @kopf.on.startup()
        def watch_as_with_bookmarks(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.watching.inactivity_timeout = 3600

    asyncio.run(measure(args.samples, args.idle_seconds))


if __name__ == "__main__":
    main()
