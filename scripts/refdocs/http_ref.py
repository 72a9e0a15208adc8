"""The HTTP API reference (``http-api.md``), from the OpenAPI document the API serves."""

from __future__ import annotations

import json
import re
from typing import Any

from .common import GENERATED_NOTE


def _schema_type(schema: dict[str, Any]) -> str:
    """A short readable type for a JSON schema (``TaskOut``, ``string``, ``list[RunOut]``)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    if "anyOf" in schema:
        kinds = [_schema_type(s) for s in schema["anyOf"]]
        return " or ".join(kinds)
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    if kind == "object":
        return "object"
    if kind is None:
        return "any JSON"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def _schema_limits(schema: dict[str, Any]) -> str:
    """Bounds and patterns of a schema (and of the non-null branch of an ``anyOf``)."""
    branches = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    found = []
    words = {
        "minimum": ">=",
        "exclusiveMinimum": ">",
        "maximum": "<=",
        "exclusiveMaximum": "<",
        "minLength": "length >=",
        "maxLength": "length <=",
        "minItems": "items >=",
        "maxItems": "items <=",
    }
    for branch in branches:
        for key, word in words.items():
            if key in branch:
                value = branch[key]
                shown = int(value) if isinstance(value, float) and value.is_integer() else value
                found.append(f"{word} {shown}")
        if "pattern" in branch:
            found.append(f"matches `{branch['pattern']}`")
    if "default" in schema and schema["default"] is not None:
        found.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(found)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", r"\|")


def render_http() -> str:
    """The HTTP API reference, from the OpenAPI document the API serves at ``/openapi.json``."""
    from taskrt.api import openapi_document
    from taskrt.api.openapi import ROLE_KEY

    doc = openapi_document()
    out = [
        GENERATED_NOTE.format(name="http"),
        "",
        "# HTTP API reference",
        "",
        f"taskrt {doc['info']['version']} serves this API with `taskrt api`; the same document "
        "is at `/openapi.json` and interactive docs at `/docs`. How to set up keys, JWTs, "
        "roles and limits: [the HTTP API how-to](../how-to/http-api.md).",
        "",
        " ".join(doc["info"].get("description", "").split()),
        "",
        "## Operations",
        "",
        "| method and path | summary | least role |",
        "|---|---|---|",
    ]
    operations = [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    ]
    for path, method, op in operations:
        anchor = re.sub(r"[^a-z0-9 _-]", "", f"{method} {path}".lower()).replace(" ", "-")
        role = f"`{op[ROLE_KEY]}`" if ROLE_KEY in op else "none (public)"
        out.append(f"| [`{method.upper()} {path}`](#{anchor}) | {op.get('summary', '')} | {role} |")
    for path, method, op in operations:
        out += ["", f"### `{method.upper()} {path}`", "", f"**{op.get('summary', '')}**", ""]
        out += [" ".join(op.get("description", "").split()), ""]
        if ROLE_KEY in op:
            out += [
                f"Least role: `{op[ROLE_KEY]}`. Credentials: `Authorization: Bearer` or "
                "`X-API-Key`.",
                "",
            ]
        else:
            out += ["Public: no credentials, no rate limit.", ""]
        params = op.get("parameters", [])
        if params:
            out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
            for param in params:
                schema = param.get("schema", {})
                limits = _schema_limits(schema)
                text = param.get("description", "") + (f" ({limits})" if limits else "")
                out.append(
                    f"| `{param['name']}` | {param['in']} | {_schema_type(schema)} | "
                    f"{'yes' if param.get('required') else 'no'} | {_cell(text)} |"
                )
            out.append("")
        body = op.get("requestBody")
        if body:
            for media, content in body.get("content", {}).items():
                out += [f"Request body (`{media}`): {_schema_type(content.get('schema', {}))}", ""]
        out += ["| status | body | meaning |", "|---|---|---|"]
        for code in sorted(op.get("responses", {})):
            response = op["responses"][code]
            bodies = [
                f"{_schema_type(c.get('schema', {}))} (`{media}`)"
                for media, c in response.get("content", {}).items()
            ]
            out.append(
                f"| {code} | {', '.join(bodies) or 'none'} | "
                f"{_cell(response.get('description', ''))} |"
            )
    out += ["", "## Schemas"]
    for name in sorted(doc.get("components", {}).get("schemas", {})):
        schema = doc["components"]["schemas"][name]
        out += ["", f"### {name}", "", " ".join(schema.get("description", "").split()), ""]
        if "enum" in schema:
            out += ["Values: " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
            continue
        required = set(schema.get("required", []))
        out += ["| field | type | required | description |", "|---|---|---|---|"]
        for field_name, field in schema.get("properties", {}).items():
            limits = _schema_limits(field)
            text = field.get("description", "") + (f" ({limits})" if limits else "")
            out.append(
                f"| `{field_name}` | {_schema_type(field)} | "
                f"{'yes' if field_name in required else 'no'} | {_cell(text)} |"
            )
    out.append("")
    lines = [line for i, line in enumerate(out) if line or (i and out[i - 1])]
    return "\n".join(lines).rstrip("\n") + "\n"
