"""`chatservice-operator`: run the Kopf operator with liveness, metrics and JSON logs."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import kopf
import prometheus_client
import yaml

from chatservice_operator.config import OperatorConfig
from chatservice_operator.kube import KubeClient


def operator_config(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig.load(namespaces=args.namespace or (), cluster_wide=args.all_namespaces)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatservice-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        help="namespace to watch (repeatable); default: $WATCH_NAMESPACE, else $POD_NAMESPACE",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics-port", type=int, default=9090)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--apply-crd",
        type=Path,
        metavar="FILE",
        help="server-side apply this CustomResourceDefinition and exit (the chart's upgrade hook)",
    )
    return parser


async def apply_crd(crd: dict[str, Any]) -> None:
    """`helm upgrade` never touches a chart's crds/: its pre-upgrade hook runs this instead."""
    # Imported here, like the handlers in main(): importing them registers Kopf handlers.
    from chatservice_operator.handlers import connection_info

    api = KubeClient(lambda: connection_info(kopf.OperatorSettings()))
    try:
        await api.apply(crd)
    finally:
        await api.close()


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.apply_crd is not None:
        asyncio.run(apply_crd(yaml.safe_load(args.apply_crd.read_text())))
        return

    config = operator_config(args)
    if not config.cluster_wide and not config.namespaces:
        parser.error("no namespace: pass --namespace, set WATCH_NAMESPACE or POD_NAMESPACE, or -A")

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    prometheus_client.start_http_server(args.metrics_port)
    # Importing registers the handlers in Kopf's default registry.
    import chatservice_operator.handlers  # noqa: F401

    kopf.run(
        clusterwide=config.cluster_wide,
        namespaces=list(config.namespaces),
        memo=kopf.Memo(config=config),
        liveness_endpoint=args.liveness,
        standalone=True,
    )
