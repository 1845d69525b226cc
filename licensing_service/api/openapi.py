"""``/openapi.json`` from the contract's route table and pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from licensing_service import __version__
from licensing_service.contract.spec import RouteSpec

_REF = "#/components/schemas/{model}"


def build(specs: tuple[RouteSpec, ...]) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for spec in specs:
        if spec.request is not None:
            models.add(spec.request)
        models.update(spec.responses.values())
    ordered = sorted(models, key=lambda model: model.__name__)
    mode: Literal["validation"] = "validation"
    keyed = [(model, mode) for model in ordered]
    refs, schema = models_json_schema(keyed, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "licensing-harness reference licensing service",
            "version": __version__,
            "description": "POSPal v2 compatible licensing API.",
        },
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {})},
    }


def _operation(spec: RouteSpec, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": _operation_id(spec),
        "tags": list(spec.tags),
        "responses": {},
    }
    if spec.request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(spec.request, "validation")]}},
        }
    for status, model in sorted(spec.responses.items()):
        op["responses"][str(status)] = {
            "description": model.__doc__.strip().splitlines()[0]
            if model.__doc__
            else model.__name__,
            "content": {"application/json": {"schema": refs[(model, "validation")]}},
        }
    if spec.text_response:
        op["responses"]["200"] = {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    if not op["responses"]:
        op["responses"]["200"] = {"description": "OK"}
    return op


def _operation_id(spec: RouteSpec) -> str:
    return f"{spec.method.lower()}_{spec.path.strip('/').replace('/', '_') or 'root'}"
