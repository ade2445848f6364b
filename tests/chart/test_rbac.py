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


def operator_rules() -> list[dict[str, Any]]:
    try:
        rbac = importlib.import_module("chatservice_operator.rbac")
    except ModuleNotFoundError:
        pytest.skip("chatservice_operator.rbac is not on this branch yet (operator branch)")
    rules: list[dict[str, Any]] = rbac.RULES
    return rules


@pytest.mark.parametrize("cluster_wide", [False, True], ids=["namespaced", "cluster-wide"])
def test_chart_grants_exactly_the_operator_rules(cluster_wide: bool) -> None:
    expected = grants(operator_rules())
    rendered = render_values({"operator": {"clusterWide": cluster_wide}})
    role = rendered.one("ClusterRole" if cluster_wide else "Role")
    assert grants(role["rules"]) == expected


def test_no_wildcards_and_no_secret_access() -> None:
    role = render_values({}).one("Role")
    for group, resource, verb in grants(role["rules"]):
        assert "*" not in (group, resource, verb)
        assert resource != "secrets", "the operator passes Secret references, it never reads them"


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    rendered = render_values({"rbac": {"create": False}})
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert rendered.of_kind(kind) == []
