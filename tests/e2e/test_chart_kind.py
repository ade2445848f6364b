"""ChatService on a real cluster (kind), installed by the chart: Ready, answering the official
`openai` SDK, migrating before each new version, keeping the old version serving when a
migration fails, and exposing metrics. Skipped without Docker, kind and kubectl."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tools.cluster import (
    Target,
    chart_values,
    chatservice_name,
    get_json,
    helm_upgrade_install,
    kubectl,
    load_images,
    operator_metrics_service,
    port_forward,
    run,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def chatservice(target: Target) -> dict[str, Any]:
    return get_json(target, "chatservice", chatservice_name(target))


def condition(resource: dict[str, Any], kind: str) -> dict[str, Any]:
    for found in resource.get("status", {}).get("conditions", []):
        if found["type"] == kind:
            return dict(found)
    return {}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(3)
    raise TimeoutError(f"timed out waiting for {what}")


def set_image(target: Target, image: str) -> None:
    kubectl(
        target,
        "patch",
        "chatservice",
        chatservice_name(target),
        "--type=merge",
        "--patch",
        f'{{"spec": {{"image": "{image}"}}}}',
    )


def service_deployment(target: Target) -> dict[str, Any]:
    return get_json(target, "deployment", chatservice_name(target))


def deployment_image(target: Target) -> str:
    containers = service_deployment(target)["spec"]["template"]["spec"]["containers"]
    return str(containers[0]["image"])


def completion(base_url: str, api_key: str) -> str:
    client = OpenAI(base_url=f"{base_url}/api/v1", api_key=api_key, max_retries=0, timeout=30)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello to kind."}]
    )
    assert reply.object == "chat.completion"
    content = reply.choices[0].message.content
    assert content
    return content


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_chatservice_is_ready_and_helm_test_passes(installed: Target) -> None:
    import helm_python

    resource = chatservice(installed)
    assert condition(resource, "Ready").get("status") == "True"
    assert resource["status"]["phase"] == "Ready"
    assert resource["status"]["currentImage"] == installed.image
    with helm_python.Config(kube_context=installed.context, namespace=installed.namespace) as cfg:
        cfg.test(installed.release, timeout=300)  # raises unless /api/v1/health/ said "ok"


def test_chat_completion_through_port_forward(service_url: str, api_key: str) -> None:
    assert completion(service_url, api_key)


def test_service_and_operator_metrics_are_exposed(
    installed: Target, service_url: str, api_key: str
) -> None:
    completion(service_url, api_key)
    metrics = httpx.get(f"{service_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "chatservice_" in metrics.text
    operator_service = f"service/{operator_metrics_service(installed)}"
    with port_forward(installed, operator_service, 9090) as operator_url:
        scraped = httpx.get(f"{operator_url}/metrics", timeout=10)
    assert scraped.status_code == 200
    assert "# TYPE" in scraped.text


def test_new_image_runs_the_migration_job_before_new_pods(installed: Target) -> None:
    new_image = f"{installed.image_repository}:{installed.tag}-next"
    run("docker", "tag", installed.image, new_image)
    load_images(installed, new_image)
    set_image(installed, new_image)
    try:
        wait_for(
            lambda: chatservice(installed).get("status", {}).get("currentImage") == new_image,
            "the ChatService to roll out the new image",
        )
        job_name = chatservice(installed)["status"]["migration"]["job"]
        job = get_json(installed, "job", job_name)
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == new_image
        finished = parse_time(job["status"]["completionTime"])
        selector = service_deployment(installed)["spec"]["selector"]["matchLabels"]
        labels = ",".join(f"{key}={value}" for key, value in selector.items())
        pods = get_json(installed, "pods", "--selector", labels)["items"]
        new_pods = [p for p in pods if p["spec"]["containers"][0]["image"] == new_image]
        assert new_pods
        for pod in new_pods:
            assert parse_time(pod["metadata"]["creationTimestamp"]) >= finished
    finally:
        set_image(installed, installed.image)
        wait_for(
            lambda: chatservice(installed).get("status", {}).get("currentImage") == installed.image,
            "the ChatService to return to the first image",
        )


BROKEN_MIGRATION = """\
FROM {base}
USER root
# `chatservice migrate` fails; every other command is the real one.
RUN mv /opt/venv/bin/chatservice /opt/venv/bin/chatservice-real \\
 && printf '%s\\n' '#!/bin/sh' \\
      'if [ "$1" = migrate ]; then echo "e2e: broken migration" >&2; exit 1; fi' \\
      'exec /opt/venv/bin/chatservice-real "$@"' > /opt/venv/bin/chatservice \\
 && chmod 0755 /opt/venv/bin/chatservice
USER 10001:10001
"""


def test_failed_migration_keeps_the_old_version_serving(
    installed: Target, service_url: str, api_key: str
) -> None:
    from testcontainers.core.image import DockerImage

    broken = f"{installed.image_repository}:{installed.tag}-broken-migration"
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(BROKEN_MIGRATION.format(base=installed.image))
        DockerImage(path=context, tag=broken, clean_up=False).build()
    load_images(installed, broken)
    before = service_deployment(installed)
    set_image(installed, broken)
    try:
        wait_for(
            lambda: (
                condition(chatservice(installed), "MigrationSucceeded").get("status") == "False"
            ),
            "the migration to fail",
        )
        resource = chatservice(installed)
        assert resource["status"]["phase"] == "Failed"
        assert condition(resource, "Degraded").get("status") == "True"
        assert deployment_image(installed) == installed.image
        after = service_deployment(installed)
        assert after["status"].get("readyReplicas") == before["status"].get("readyReplicas")
        assert completion(service_url, api_key), "the old version must keep answering"
    finally:
        set_image(installed, installed.image)
        wait_for(
            lambda: condition(chatservice(installed), "Ready").get("status") == "True",
            "the ChatService to be Ready again on the first image",
        )


def test_helm_upgrade_keeps_the_service_ready(installed: Target) -> None:
    values = chart_values(installed)
    values["chatService"]["replicas"] = 3
    helm_upgrade_install(installed, values)
    wait_for(
        lambda: service_deployment(installed)["status"].get("readyReplicas") == 3,
        "three ready service pods",
    )
    helm_upgrade_install(installed, chart_values(installed))
