"""The chart as the Helm engine renders it, in every scenario: valid objects, the probes bound
to the health tiers, standard labels, selectors, images, RBAC scope and the gated extras."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.apiserver.crd_validation import strict_errors
from tests.versions import KUBERNETES_VERSION

from .rendering import (
    MONITORING_API,
    NAMESPACE,
    RELEASE,
    Manifest,
    Rendered,
    Scenario,
    chart_crd,
)

# Kinds served by CRDs; kubernetes-validate has no schema for them. ChatService is checked
# against the chart's own CRD; the monitoring kinds by the wiring tests below.
CUSTOM_KINDS = {"ChatService", "ServiceMonitor", "PrometheusRule"}
STANDARD_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def operator_deployment(rendered: Rendered) -> Manifest:
    return rendered.one("Deployment")


def operator_container(rendered: Rendered) -> Manifest:
    containers = operator_deployment(rendered)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def test_every_builtin_object_is_valid_for_kubernetes(rendered: Rendered) -> None:
    builtin = [obj for obj in rendered.manifests() if obj["kind"] not in CUSTOM_KINDS]
    assert builtin
    for obj in builtin:
        # --strict: an unknown or misspelt field is an error, as `kubectl apply` would report.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_object_is_namespaced_to_the_release_or_cluster_scoped(rendered: Rendered) -> None:
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in rendered.manifests():
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["metadata"]["name"]
        else:
            assert namespace == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


def test_chatservice_is_valid_against_the_crd_schema(
    rendered: Rendered, scenario: Scenario
) -> None:
    chatservices = rendered.of_kind("ChatService")
    if scenario.creates_chatservice():
        assert len(chatservices) == 1
    else:
        assert chatservices == []
        return
    assert strict_errors(chatservices[0], chart_crd()) == []


def test_chatservice_probes_are_bound_to_the_health_tiers(rendered: Rendered) -> None:
    for chatservice in rendered.of_kind("ChatService"):
        probes = chatservice["spec"]["probes"]
        assert probes["liveness"]["path"] == "/api/v1/health/live"
        assert probes["startup"]["path"] == "/api/v1/health/live"
        assert probes["readiness"]["path"] == "/api/v1/health/ready"


def test_probe_timings_come_from_values(scenario: Scenario, rendered: Rendered) -> None:
    import helm_python

    from .rendering import CHART_DIR

    # The values an install would use: chart defaults coalesced with the scenario's, by Helm.
    with helm_python.Chart.load(CHART_DIR) as chart:
        probes = chart.merge_values(scenario.load_values())["chatService"]["probes"]
    for chatservice in rendered.of_kind("ChatService"):
        for tier in ("liveness", "readiness", "startup"):
            rendered_probe = dict(chatservice["spec"]["probes"][tier])
            rendered_probe.pop("path")
            assert rendered_probe == probes[tier], tier


def test_operator_runs_once_with_recreate_liveness_and_metrics(rendered: Rendered) -> None:
    deployment = operator_deployment(rendered)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(rendered)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness == {"path": "/healthz", "port": "health"}
    # The operator listens where the ports say: its CLI takes both from the arguments.
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--metrics-port=9090" in container["args"]


def test_every_object_has_the_standard_labels(rendered: Rendered) -> None:
    for obj in rendered.manifests():
        labels = obj["metadata"].get("labels", {})
        missing = STANDARD_LABELS - labels.keys()
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_selectors_use_name_and_instance_only_and_match_the_pods(rendered: Rendered) -> None:
    deployment = operator_deployment(rendered)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.keys() == SELECTOR_KEYS
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()

    service = rendered.one("Service")
    assert service["spec"]["selector"] == selector
    for policy in rendered.of_kind("NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"] == selector
    for monitor in rendered.of_kind("ServiceMonitor"):
        assert monitor["spec"]["selector"]["matchLabels"].keys() == SELECTOR_KEYS
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )


def test_operator_selector_cannot_match_the_service_pods(rendered: Rendered) -> None:
    # The service pods the operator creates are named after the application (`chatservice`);
    # an operator Deployment whose selector matched them would adopt and fight over them.
    selector = operator_deployment(rendered)["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "chatservice-operator"
    for chatservice in rendered.of_kind("ChatService"):
        assert chatservice["metadata"]["labels"]["app.kubernetes.io/name"] == "chatservice"


def test_monitoring_objects_exist_only_where_the_api_is_offered(
    scenario: Scenario, rendered: Rendered
) -> None:
    offered = MONITORING_API in scenario.api_versions
    assert bool(rendered.of_kind("ServiceMonitor")) == offered
    assert bool(rendered.of_kind("PrometheusRule")) == offered


def test_service_monitor_scrapes_the_operator_metrics_port(rendered: Rendered) -> None:
    for monitor in rendered.of_kind("ServiceMonitor"):
        service_ports = {port["name"] for port in rendered.one("Service")["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports
            assert endpoint["path"] == "/metrics"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_prometheus_rule_alerts_when_the_operator_is_down(rendered: Rendered) -> None:
    for rule in rendered.of_kind("PrometheusRule"):
        alerts = {r.get("alert"): r for group in rule["spec"]["groups"] for r in group["rules"]}
        # Prometheus Operator names the scrape job after the Service the ServiceMonitor selects.
        job = rendered.one("Service")["metadata"]["name"]
        assert f'job="{job}"' in alerts["ChatServiceOperatorDown"]["expr"]
        assert alerts["ChatServiceOperatorAbsent"]["expr"].startswith("absent(")


def test_prometheus_rule_expressions_parse(rendered: Rendered) -> None:
    # A PromQL syntax error is refused by Prometheus Operator's admission webhook, or leaves
    # the alert silently unloaded; the chart's and the user's additional rules are both checked.
    import promql_parser

    for rule in rendered.of_kind("PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for alert in group["rules"]:
                promql_parser.parse(alert["expr"])
    with pytest.raises(ValueError, match="braces"):
        promql_parser.parse('up{job="x" == 0')


def test_image_digest_wins_over_tag(scenario: Scenario, rendered: Rendered) -> None:
    values = scenario.load_values()
    images = [operator_container(rendered)["image"]]
    images += [cs["spec"]["image"] for cs in rendered.of_kind("ChatService")]
    for image in images:
        if scenario.name == "digest":
            assert "@sha256:" in image
            assert ":9.9.9" not in image
        else:
            assert image.endswith(":0.1.0"), "the tag defaults to the chart's appVersion"
    if scenario.name == "digest":
        digest = values["chatService"]["image"]["digest"]
        assert rendered.one("ChatService")["spec"]["image"] == (
            f"registry.example/chatservice@{digest}"
        )


def test_rbac_scope_follows_cluster_wide(scenario: Scenario, rendered: Rendered) -> None:
    cluster_wide = scenario.load_values().get("operator", {}).get("clusterWide", False)
    args = operator_container(rendered)["args"]
    rendered = rendered.without_hooks()  # the CRD upgrade hook has a ClusterRole of its own
    scope = args[0]
    if cluster_wide:
        assert scope == "--all-namespaces"
        assert rendered.of_kind("Role") == rendered.of_kind("RoleBinding") == []
        bindings = [rendered.one("ClusterRoleBinding")]
        assert bindings[0]["roleRef"]["name"] == rendered.one("ClusterRole")["metadata"]["name"]
    else:
        assert scope == f"--namespace={NAMESPACE}"
        # Kopf's scanning is off: a namespaced operator needs nothing cluster-scoped.
        assert rendered.of_kind("ClusterRole") == rendered.of_kind("ClusterRoleBinding") == []
        bindings = [rendered.one("RoleBinding")]
        assert bindings[0]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": rendered.one("Role")["metadata"]["name"],
        }
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    assert operator_deployment(rendered)["spec"]["template"]["spec"]["serviceAccountName"] == (
        account
    )


def test_secrets_are_created_only_from_given_values(scenario: Scenario, rendered: Rendered) -> None:
    values = scenario.load_values()
    secrets = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    if scenario.name == "all-features":
        assert set(secrets) == {f"{RELEASE}-database", f"{RELEASE}-admin"}
        assert set(secrets[f"{RELEASE}-database"]["data"]) == {"url"}
        assert set(secrets[f"{RELEASE}-admin"]["data"]) == {"key"}
    else:
        assert secrets == {}
    for chatservice in rendered.of_kind("ChatService"):
        database_ref = chatservice["spec"]["database"]["urlSecretRef"]
        admin_ref = chatservice["spec"]["auth"]["adminKeySecretRef"]
        expected_database = values.get("database", {}).get("existingSecret") or (
            f"{RELEASE}-database"
        )
        expected_admin = values.get("auth", {}).get("existingSecret") or f"{RELEASE}-admin"
        assert database_ref["name"] == expected_database
        assert admin_ref["name"] == expected_admin
        assert database_ref["key"] == values.get("database", {}).get("secretKey", "url")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"database": {"existingSecret": "mine", "url": "postgresql+asyncpg://u:p@h/d"}}, "db"),
        ({"auth": {"existingSecret": "mine", "adminKey": "PLACEHOLDER"}}, "admin"),
    ],
)
def test_existing_secret_wins_over_a_value(values: Manifest, reason: str) -> None:
    from .rendering import render_values

    rendered = render_values(values)
    assert rendered.of_kind("Secret") == [], reason
    spec = rendered.one("ChatService")["spec"]
    refs = {spec["database"]["urlSecretRef"]["name"], spec["auth"]["adminKeySecretRef"]["name"]}
    assert "mine" in refs


def test_network_policy_admits_only_metrics_and_reaches_only_dns_api_and_pod_metrics(
    scenario: Scenario, rendered: Rendered
) -> None:
    enabled = scenario.load_values().get("networkPolicy", {}).get("enabled", False)
    policies = rendered.of_kind("NetworkPolicy")
    assert len(policies) == (1 if enabled else 0)
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert egress_ports == {53, 443, 6443, 8000}
        # Port 8000 (canary verdicts read the pods' /metrics) only towards ChatService pods.
        (to_pods,) = [r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 8000]
        assert to_pods["to"] == [
            {
                "namespaceSelector": {},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "chatservice",
                        "app.kubernetes.io/component": "server",
                    }
                },
            }
        ]


def test_notes_tell_how_to_reach_the_service_and_read_its_status(
    scenario: Scenario, rendered: Rendered
) -> None:
    if not rendered.notes:
        pytest.skip("the helm binary renders NOTES.txt only on install")
    if scenario.creates_chatservice():
        name = rendered.one("ChatService")["metadata"]["name"]
        assert f"kubectl -n {NAMESPACE} get chatservice {name}" in rendered.notes
        assert f"port-forward service/{name} 8000:80" in rendered.notes
        assert f"helm test {RELEASE}" in rendered.notes
    else:
        assert "kubectl -n chatservice apply -f my-chatservice.yaml" in rendered.notes


def test_tracing_values_reach_the_chatservice_only_when_an_endpoint_is_set() -> None:
    from .rendering import render_values

    assert "tracing" not in render_values({}).one("ChatService")["spec"]
    traced = {
        "otlpEndpoint": "http://otel-collector.obs:4318",
        "sampleRatio": 0.2,
        "headersSecretRef": {"name": "otlp", "key": "headers"},
        "captureMessageContent": True,
    }
    rendered = render_values({"chatService": {"tracing": traced}})
    chatservice = rendered.one("ChatService")
    assert chatservice["spec"]["tracing"] == traced
    assert strict_errors(chatservice, chart_crd()) == []
    endpoint_only = {"otlpEndpoint": "http://otel-collector.obs:4318"}
    spec = render_values({"chatService": {"tracing": endpoint_only}}).one("ChatService")["spec"]
    assert spec["tracing"]["captureMessageContent"] is False


def test_rate_limit_values_reach_the_chatservice() -> None:
    from .rendering import render_values

    default = render_values({}).one("ChatService")["spec"]
    assert default["rateLimits"] == {"failureMode": "open"}
    limits = {"redisURLSecretRef": {"name": "redis", "key": "url"}, "failureMode": "closed"}
    chatservice = render_values({"chatService": {"rateLimits": limits}}).one("ChatService")
    assert chatservice["spec"]["rateLimits"] == limits
    assert strict_errors(chatservice, chart_crd()) == []


def test_discovered_backends_reach_the_chatservice() -> None:
    from .rendering import render_values

    backends = [
        {"model": "llama", "baseURL": "http://vllm.models.svc:8000/v1", "discovery": "dns"},
        {
            "model": "tgi",
            "endpoints": [{"baseURL": "http://tgi.models.svc/v1", "discovery": "dns"}],
        },
    ]
    chatservice = render_values({"chatService": {"backends": backends}}).one("ChatService")
    assert chatservice["spec"]["inference"]["backends"] == backends
    assert strict_errors(chatservice, chart_crd()) == []


def test_a_login_signing_key_reaches_the_chatservice() -> None:
    from .rendering import render_values

    assert "jwtSecretRef" not in render_values({}).one("ChatService")["spec"]["auth"]
    ref = {"name": "chat-jwt", "key": "secret"}
    chatservice = render_values({"auth": {"jwtSecretRef": ref}}).one("ChatService")
    assert chatservice["spec"]["auth"]["jwtSecretRef"] == ref
    assert strict_errors(chatservice, chart_crd()) == []
