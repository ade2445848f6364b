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


# Known defect of k8s/base/crd.yaml (operator branch), reported, not ours to edit: under
# inference.backends[], `apiKeySecretRef` has `properties:` null and its `name`/`key` sit one
# level too far out, so the API server prunes them and rejects every ChatService that names an
# upstream API key (`required: [name, key]`). Tests that meet it check everything else, then
# report it as an expected failure; once the CRD is fixed (and copied) they check it all.
API_KEY_REF_DEFECT = (
    "The CRD's backends[].apiKeySecretRef declares no fields (`properties:` null, name/key "
    "mis-indented in k8s/base/crd.yaml): ChatServices with an upstream API key are rejected"
)


def has_api_key_ref_defect(crd: Manifest) -> bool:
    for served in crd["spec"]["versions"]:
        backend = served["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
            "inference"
        ]["properties"]["backends"]["items"]
        ref = backend.get("properties", {}).get("apiKeySecretRef", {})
        if "properties" in ref and ref["properties"] is None:
            return True
    return False


def without_api_key_refs(resource: Manifest) -> tuple[Manifest, bool]:
    """The resource without backends[].apiKeySecretRef, and whether it had any."""
    stripped = copy.deepcopy(resource)
    backends = stripped.get("spec", {}).get("inference", {}).get("backends", [])
    had = any("apiKeySecretRef" in backend for backend in backends)
    for backend in backends:
        backend.pop("apiKeySecretRef", None)
    return stripped, had


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
