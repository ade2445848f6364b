"""Fixtures of the end-to-end tests: a kind cluster with ChatService installed by the chart.

They need a Docker engine, kind and kubectl; without them every e2e test is skipped, saying
which is missing. `make e2e` runs them; they build the images themselves (Testcontainers), so
`pytest -m e2e tests/e2e` works on its own too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tools.cluster import (
    REPO_ROOT,
    Target,
    admin_key,
    chatservice_name,
    deploy,
    docker_engine_answers,
    ensure_cluster,
    missing_tools,
    port_forward,
)


def _skip_reason() -> str | None:
    problems = [f"{tool} is not on PATH" for tool in missing_tools()]
    if not docker_engine_answers():
        problems.append("no Docker engine answers `docker info`")
    if not problems:
        return None
    return (
        "kind end-to-end tests need a Docker engine, kind and kubectl (run `make e2e` where they"
        f" exist): {'; '.join(problems)}"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.skip(reason=reason))


def build_image(target_stage: str, tag: str) -> None:
    """Builds one target of the project's Dockerfile with Testcontainers' DockerImage."""
    from testcontainers.core.image import DockerImage

    DockerImage(path=REPO_ROOT, tag=tag, clean_up=False, target=target_stage).build()


@pytest.fixture(scope="session")
def target() -> Target:
    return Target(
        cluster=os.environ.get("KIND_CLUSTER", "chatservice"),
        # The same namespace and tag as `make deploy`: the CRD is cluster-wide and owned by one
        # release, so a second release in another namespace could not install it.
        namespace=os.environ.get("K8S_NAMESPACE", "chatservice"),
        tag=os.environ.get("IMAGE_TAG", "dev"),
    )


@pytest.fixture(scope="session")
def installed(target: Target) -> Target:
    """kind cluster up, images built and loaded, chart installed, ChatService Ready."""
    ensure_cluster(target)
    build_image("service", target.image)
    build_image("operator", target.operator_image)
    deploy(target)
    return target


@pytest.fixture(scope="session")
def api_key(installed: Target) -> str:
    return admin_key(installed)


@pytest.fixture
def service_url(installed: Target) -> Iterator[str]:
    with port_forward(installed, f"service/{chatservice_name(installed)}", 80) as url:
        yield url
