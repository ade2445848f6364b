"""A canary's timeline and API traffic, on kmock with the real Kopf runtime and fake pods.

    .venv/bin/python tools/bench/canary_flow.py [--duration 60] [--interval 10]

The script plays the Job and Deployment controllers at once (no pod start-up time) and serves
each pod's /metrics on loopback with steady healthy traffic. Prints the time from the migration
Job's success to the verdict, its parts, and the API requests the operator made per minute
while the canary was judged, by request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.apiserver
os.environ.setdefault("CHATSERVICE_OPERATOR_DRIFT_SECONDS", "300")

import aiohttp
import kmock

from tests.apiserver.emulator import ApiServerEmulator
from tests.operator.canary_pods import Pods
from tests.operator.flow_steps import install, status
from tests.operator.operator_harness import (
    CHATSERVICES,
    DEPLOYMENTS,
    JOBS,
    OPERATOR_TOKEN,
    Cluster,
    Operator,
    chart_grant,
    crd,
    declare,
)
from tests.operator.operator_specs import NEW, job_for


class TimedEmulator(ApiServerEmulator):
    """Stamps every request on arrival."""

    arrivals: list[tuple[float, Any]]

    async def _handle(self, request: Any) -> Any:
        self.arrivals.append((time.perf_counter(), request))
        return await super()._handle(request)


async def until(check: Callable[[], Any], within: float, what: str) -> float:
    """Wait for a state; returns when it was seen (polled every 20 ms)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - kmock's store has no change notification
            await asyncio.sleep(0.02)
    print(f"  seen: {what}")
    return time.perf_counter()


async def measure(duration: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        emulator = TimedEmulator(grant=chart_grant(cluster_wide=True), crds=[crd()])
        emulator.arrivals = []
        async with emulator, kmock.Server(emulator), aiohttp.ClientSession() as session:
            declare(emulator, service_monitors=True)
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
                "contexts: [{name: k, context: {cluster: k, user: k}}]\n"
                f"clusters: [{{name: k, cluster: {{server: '{emulator.url}'}}}}]\n"
                f"users: [{{name: k, user: {{token: {OPERATOR_TOKEN}}}}}]\n"
            )
            os.environ["KUBECONFIG"] = str(kubeconfig)
            cluster = Cluster(emulator, session)
            pods = Pods(cluster)
            operator = Operator()
            await operator.start()
            try:
                canary = {"enabled": True, "duration": f"{duration}s", "minRequests": 100}
                await install(cluster, rollout={"canary": canary})
                await pods.start_for("chat-stable")
                async with pods.traffic(per_pod=1, every=0.1):
                    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
                    await until(lambda: cluster.get(JOBS, job_for(NEW)), 30, "the Job")
                    succeeded = time.perf_counter()
                    await cluster.complete_job(job_for(NEW))
                    created = await until(
                        lambda: cluster.get(DEPLOYMENTS, "chat-canary"), 30, "the canary"
                    )
                    await cluster.roll_out("chat-canary")
                    await pods.start_for("chat-canary")
                    opened = await until(
                        lambda: (status(cluster).get("canary") or {}).get("started"),
                        60,
                        "the window opened",
                    )
                    decided = await until(
                        lambda: (status(cluster).get("canary") or {}).get("verdict") == "Passed",
                        duration + 60,
                        "the verdict",
                    )
                verdict = status(cluster)["canary"]
            finally:
                await operator.stop()
                await pods.close()

    judged = [
        request
        for stamp, request in emulator.arrivals
        if opened <= stamp <= decided
        and request.headers.get("Authorization") == f"Bearer {OPERATOR_TOKEN}"
    ]
    window = decided - opened
    interval = os.environ["CHATSERVICE_OPERATOR_CANARY_SECONDS"]
    print(f"\nduration {duration}s, canary interval {interval}s")
    print(f"Job succeeded -> canary Deployment applied   {created - succeeded:7.2f} s")
    print(f"canary applied -> window opened (pods ready) {opened - created:7.2f} s")
    print(f"window opened -> verdict                     {window:7.2f} s")
    print(f"Job succeeded -> verdict                     {decided - succeeded:7.2f} s")
    print(f"requests seen by the canary: {verdict['requestsSeen']}")
    print(
        f"\nAPI requests of the operator while judging: {len(judged)} in {window:.1f} s "
        f"= {len(judged) / (window / 60):.1f} per minute"
    )
    for (method, path), count in sorted(
        Counter((str(r.method.value), r.url.path) for r in judged).items()
    ):
        print(f"  {count:4d}  {method:6s} {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    # Read by the operator's configuration when it starts.
    os.environ["CHATSERVICE_OPERATOR_CANARY_SECONDS"] = str(args.interval)
    asyncio.run(measure(args.duration))


if __name__ == "__main__":
    main()
