"""Validates a custom resource against a CRD's openAPIV3Schema the way the API server treats it.

The API server prunes fields a structural schema does not declare, silently: a value the chart
sets but the CRD does not know would be lost. So undeclared fields are errors here.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

Manifest = dict[str, Any]


def _strict(schema: Any) -> Any:
    """Closes every object schema that declares properties and does not preserve unknown fields."""
    if isinstance(schema, dict):
        closed = {key: _strict(value) for key, value in schema.items()}
        if "properties" in closed and closed["properties"] is None:
            closed["properties"] = {}  # the API server reads `properties: null` as no fields
        if (
            closed.get("type") == "object"
            and "properties" in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in closed
        ):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def version_schema(crd: Manifest, version: str) -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"{crd['metadata']['name']} has no version {version}")


def validate(resource: Manifest, crd: Manifest) -> None:
    """Raises jsonschema.ValidationError when the resource breaks the CRD schema."""
    group, _, version = resource["apiVersion"].partition("/")
    assert group == crd["spec"]["group"], f"{resource['apiVersion']} is not served by this CRD"
    assert resource["kind"] == crd["spec"]["names"]["kind"]
    schema = _strict(copy.deepcopy(version_schema(crd, version)))
    # metadata is validated by the API server itself, not by the CRD schema.
    checked = {key: value for key, value in resource.items() if key != "metadata"}
    schema.get("properties", {}).pop("metadata", None)
    jsonschema.validate(checked, schema, cls=jsonschema.Draft7Validator)
