"""The operator's Role/ClusterRole grants exactly the rules chatservice_operator.rbac lists."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import pytest

from .rendering import render_values

Grant = tuple[str, str, str]


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    """Each (apiGroup, resource, verb) a rule list allows: the RBAC meaning, not its layout."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def operator_rules(name: str) -> list[dict[str, Any]]:
    try:
        rbac = importlib.import_module("chatservice_operator.rbac")
    except ModuleNotFoundError:
        pytest.skip("chatservice_operator.rbac is not on this branch yet (operator branch)")
    rules: list[dict[str, Any]] = getattr(rbac, name)
    return rules


def test_namespaced_operator_gets_a_role_and_nothing_cluster_scoped() -> None:
    rendered = render_values({}).without_hooks()
    role = rendered.one("Role")
    assert grants(role["rules"]) == grants(operator_rules("RULES"))
    assert rendered.of_kind("ClusterRole") == rendered.of_kind("ClusterRoleBinding") == []


def test_cluster_wide_operator_gets_every_rule_in_one_cluster_role() -> None:
    rendered = render_values({"operator": {"clusterWide": True}}).without_hooks()
    assert rendered.of_kind("Role") == []
    cluster_role = rendered.one("ClusterRole")
    assert grants(cluster_role["rules"]) == grants(operator_rules("RULES"))


def test_no_wildcards_and_no_secret_access() -> None:
    rendered = render_values({"operator": {"clusterWide": True}}).without_hooks()
    for group, resource, verb in grants(rendered.one("ClusterRole")["rules"]):
        assert "*" not in (group, resource, verb)
        assert resource != "secrets", "the operator passes Secret references, it never reads them"


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    rendered = render_values({"rbac": {"create": False}}).without_hooks()
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert rendered.of_kind(kind) == []
