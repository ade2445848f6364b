"""What the API server does with a CRD's structural schema: the checks it makes on the defaults
when the CRD is created, and defaulting, pruning, validation and CEL on every custom resource.
The one CRD validator of the tests: the emulated API server, the chart's and the operator's
manifest tests all use it.

The order and the rules follow apiextensions-apiserver: a `default` is validated as written (its
nested defaults are NOT applied first) against the schema and the CEL rules of the node it sits
on; a resource is defaulted, pruned, then validated, then its CEL rules are evaluated.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]
_CEL = celpy.Environment()


def version_schema(crd: dict[str, Any], version: str) -> Schema:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: Schema = served["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"{crd['metadata']['name']} has no version {version}")


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Structural defaulting: fill each absent field that has a default, then descend into it."""
    if isinstance(value, dict) and "properties" in schema:
        value = dict(value)
        for key, sub in (schema["properties"] or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def prune(schema: Schema, value: Any) -> Any:
    """Drop the fields a structural schema does not declare (the API server does it silently)."""
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        properties = schema.get("properties") or {}
        if "properties" in schema or "additionalProperties" not in schema:
            return {k: prune(properties[k], v) for k, v in value.items() if k in properties}
        extra = schema["additionalProperties"]
        sub = extra if isinstance(extra, dict) else {}
        return {k: prune(sub, v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [prune(schema["items"], item) for item in value]
    return value


def _openapi_errors(schema: Schema, value: Any, path: str) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{path}{''.join(f'.{p}' if isinstance(p, str) else f'[{p}]' for p in e.absolute_path)}: "
        f"Invalid value: {e.message}"
        for e in validator.iter_errors(value)
    ]


def cel_errors(schema: Schema, value: Any, path: str) -> list[str]:
    """Every x-kubernetes-validations rule of the schema's tree where a value is present, with
    `self` bound to it. A rule that cannot be evaluated (e.g. `no such key`) is an error, as on
    the API server."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        activation = {"self": json_to_cel(value)}
        try:
            result = _CEL.program(_CEL.compile(rule["rule"])).evaluate(activation)
        except CELEvalError as exc:
            errors.append(
                f"{path}: Invalid value: {exc.args[0]} evaluating rule: {rule['message']}"
            )
            continue
        if isinstance(result, CELEvalError):
            errors.append(
                f"{path}: Invalid value: {result.args[0]} evaluating rule: {rule['message']}"
            )
        elif not result:
            errors.append(f"{path}: Invalid value: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += cel_errors(sub, value[key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def default_errors(schema: Schema, path: str = "openAPIV3Schema") -> list[str]:
    """The errors the API server reports for the defaults of a CRD version's schema: each
    default must be as pruning leaves it, valid for its node's schema and pass its CEL rules."""
    errors = []
    if "default" in schema:
        default = schema["default"]
        where = f"{path}.default"
        if prune(schema, default) != default:
            errors.append(f"{where}: Invalid value: must not have unknown fields")
        errors += _openapi_errors(schema, default, where)
        errors += cel_errors(schema, default, where)
    for key, sub in (schema.get("properties") or {}).items():
        errors += default_errors(sub, f"{path}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        errors += default_errors(schema["items"], f"{path}.items")
    return errors


def crd_errors(crd: dict[str, Any]) -> list[str]:
    """What creating (or updating) the CRD is refused for, as far as defaults are concerned."""
    return [
        f"spec.validation.{error}"
        for version in crd["spec"]["versions"]
        for error in default_errors(version["schema"]["openAPIV3Schema"])
    ]


def admit(resource: dict[str, Any], crd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A custom resource as the API server stores it (defaulted and pruned), and the errors it
    is refused for (empty when it is admitted)."""
    version = resource["apiVersion"].rpartition("/")[2]
    schema = version_schema(crd, version)
    metadata = resource.get("metadata", {})
    stored = prune(schema, apply_defaults(schema, resource))
    stored["metadata"] = metadata  # the API server validates metadata itself, not the schema
    # The schema's own `metadata` node only constrains name and generateName; CEL sees it all.
    checked = {k: v for k, v in stored.items() if k != "metadata"}
    body_schema = {k: v for k, v in schema.items() if k != "x-kubernetes-validations"}
    body_schema["properties"] = {
        k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"
    }
    errors = _openapi_errors(body_schema, checked, "")
    errors += cel_errors(schema, stored, "")
    return stored, [error.removeprefix(".") for error in errors]


def undeclared_fields(schema: Schema, value: Any, path: str = "") -> list[str]:
    """The fields pruning would drop: a value the chart sets that the CRD does not know would be
    lost without a word, so a chart test treats each as an error."""
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        properties = schema.get("properties") or {}
        if "properties" in schema or "additionalProperties" not in schema:
            found = [f"{path}.{k}" for k in value if k not in properties]
            subs = {k: properties[k] for k in value if k in properties}
        else:
            extra = schema["additionalProperties"]
            subs = {k: extra if isinstance(extra, dict) else {} for k in value}
            found = []
        for key, sub in subs.items():
            found += undeclared_fields(sub, value[key], f"{path}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [
            field
            for index, item in enumerate(value)
            for field in undeclared_fields(schema["items"], item, f"{path}[{index}]")
        ]
    return []


def strict_errors(resource: dict[str, Any], crd: dict[str, Any]) -> list[str]:
    """admit()'s errors plus every field the API server would prune (metadata aside)."""
    version = resource["apiVersion"].rpartition("/")[2]
    body = {k: v for k, v in resource.items() if k != "metadata"}
    pruned = undeclared_fields(version_schema(crd, version), body)
    return admit(resource, crd)[1] + [f"{field[1:]}: field not declared" for field in pruned]
