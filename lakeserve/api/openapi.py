"""OpenAPI for routes that read their body themselves (binary v2 tensors, MLflow payloads).

Such a route declares its body with `raw_body`, and `install_openapi` adds the body models
(and the models they nest) to the document's components, so every `$ref` resolves.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def raw_body(model: type[BaseModel], example: dict[str, Any], description: str) -> dict[str, Any]:
    """Return the `openapi_extra` of a route whose JSON body is `model`."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(model=model.__name__)},
                    "example": example,
                }
            },
        }
    }


def install_openapi(app: FastAPI, bodies: list[type[BaseModel]]) -> None:
    """Make the app's OpenAPI document carry the schemas of `bodies`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in bodies:
                schema = model.model_json_schema(ref_template=REF)
                for name, nested in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, nested)
                schemas.setdefault(model.__name__, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
