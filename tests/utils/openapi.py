"""Check an OpenAPI document: valid per the 3.1 spec, every `$ref` pointing at something."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from openapi_spec_validator import validate


def refs(node: Any) -> Iterator[str]:
    """Yield every `$ref` string anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def unresolved(spec: dict[str, Any]) -> list[str]:
    """Return the local `$ref`s that point at nothing in `spec`."""
    missing = []
    for ref in sorted(set(refs(spec))):
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if not ref.startswith("#/") or target is None:
            missing.append(ref)
    return missing


def check(spec: dict[str, Any]) -> None:
    """Raise if the document is not valid OpenAPI or holds a dangling `$ref`."""
    validate(spec)
    assert unresolved(spec) == [], f"unresolved $refs: {unresolved(spec)}"
