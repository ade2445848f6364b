"""`chatservice-operator` as a real process: scope flags, liveness, metrics, JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from chatservice_operator.cli import build_parser, main, operator_config
from tests.operator.operator_harness import CHATSERVICES, JOBS, Cluster, eventually
from tests.operator.operator_specs import OLD, body, job_for
from tests.ports import free_port

OPERATOR = Path(sys.executable).parent / "chatservice-operator"


def test_namespace_comes_from_flag_then_watch_namespace_then_pod_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = build_parser()
    monkeypatch.setenv("POD_NAMESPACE", "pod-ns")
    assert operator_config(parser.parse_args([])).namespaces == ("pod-ns",)
    monkeypatch.setenv("WATCH_NAMESPACE", "a, b")
    assert operator_config(parser.parse_args([])).namespaces == ("a", "b")
    assert operator_config(parser.parse_args(["-n", "x", "-n", "y"])).namespaces == ("x", "y")


def test_without_any_namespace_it_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WATCH_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "no namespace" in capsys.readouterr().err


async def test_the_process_reconciles_and_serves_liveness_and_metrics(cluster: Cluster) -> None:
    liveness, metrics = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        str(OPERATOR),
        "--all-namespaces",  # kmock 0.8 cannot list namespaces
        "--liveness",
        f"http://127.0.0.1:{liveness}/healthz",
        "--metrics-port",
        str(metrics),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await cluster.create(CHATSERVICES, body(image=OLD))
        await eventually(lambda: cluster.get(JOBS, job_for(OLD)), message="the migration Job")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{liveness}/healthz") as response:
                assert response.status == 200
            exposition = ""
            async with asyncio.timeout(10):  # the pass that created the Job is still finishing
                while 'reconciles_total{outcome="success"}' not in exposition:
                    async with session.get(f"http://127.0.0.1:{metrics}/metrics") as response:
                        exposition = await response.text()
        assert 'chatservice_operator_migrations_total{outcome="started"} 1.0' in exposition
        assert "chatservice_operator_reconcile_duration_seconds_count" in exposition
        assert "chatservice_operator_rollbacks_total 0.0" in exposition
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    lines = [line for line in output.decode().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is a JSON record
    assert any("message" in record for record in records)
