#!/usr/bin/env python3
"""Generate docs/api.md from the API's OpenAPI schema.

    .venv/bin/python docs/generate_api_md.py           # rewrite docs/api.md
    .venv/bin/python docs/generate_api_md.py --check   # exit 1 if docs/api.md is out of date

The schema comes from ``functions.api.app.create_app`` with a dummy context (no AWS is touched), exactly
as FastAPI serves it at ``/openapi.json``. The message format of ``add-messages`` (validated one by one,
so the schema types ``messages`` as a list of anything) is added from ``mailproxy.models.MessageIn``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

OUTPUT = ROOT / "docs" / "api.md"
TOKEN_HEADER = "x-api-token"  # noqa: S105 - a header name
METHODS = ("get", "post", "put", "patch", "delete")


def openapi_schema() -> dict[str, Any]:
    from functions.api.app import ApiContext, create_app

    def no_services() -> Any:
        raise RuntimeError("the documentation generator touches no AWS service")

    app = create_app(ApiContext(services=no_services, api_token=lambda: "", trigger_report=lambda: None))
    schema: dict[str, Any] = app.openapi()
    return schema


def message_schema() -> dict[str, Any] | None:
    try:
        from mailproxy.models import MessageIn
    except ImportError:  # pragma: no cover - renamed: the appendix disappears, the test shows it
        return None
    schema: dict[str, Any] = MessageIn.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema


# --------------------------------------------------------------------------- rendering helpers


def anchor(name: str) -> str:
    return "schema-" + name.lower().replace("_", "-")


def cell(text: Any) -> str:
    value = "" if text is None else str(text)
    return value.replace("\r", " ").replace("\n", " ").replace("|", "\\|").strip()


def code(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) and value else json.dumps(value)
    return f"`{text}`"


def number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _type_of_ref(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return f"[{name}](#{anchor(name)})"


def _type_of_union(branches: list[dict[str, Any]]) -> str:
    return " | ".join(dict.fromkeys(type_of(branch) for branch in branches))


def _type_of_single_all_of(branches: list[dict[str, Any]]) -> str | None:
    return type_of(branches[0]) if len(branches) == 1 else None  # a longer allOf passes: shown by its other keywords


# The keywords that decide the shown type, in order of precedence; a renderer returning None passes.
_TYPE_BY_KEYWORD: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
    ("$ref", _type_of_ref),
    ("anyOf", _type_of_union),
    ("oneOf", _type_of_union),
    ("allOf", _type_of_single_all_of),
    ("const", code),
    ("enum", lambda values: " | ".join(code(v) for v in values)),
)


def type_of(schema: dict[str, Any]) -> str:
    if not schema:
        return "any"
    for keyword, render in _TYPE_BY_KEYWORD:
        if keyword in schema and (shown := render(schema[keyword])) is not None:
            return shown
    return _type_of_kind(schema)


def _type_of_kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"object (string → {type_of(extra)})"
        return "object"
    if kind is None:
        return "any"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


_CONSTRAINTS = (
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("minProperties", "entries ≥ {}"),
    ("maxProperties", "entries ≤ {}"),
)


def constraints(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for branch in [schema, *schema.get("anyOf", [])]:
        for key, template in _CONSTRAINTS:
            if key in branch:
                found.append(template.format(number(branch[key])))
        if "pattern" in branch:
            found.append(f"pattern `{branch['pattern']}`")
    return list(dict.fromkeys(found))


def notes(schema: dict[str, Any]) -> str:
    parts = []
    if schema.get("description"):
        parts.append(str(schema["description"]))
    parts.extend(constraints(schema))
    return "; ".join(parts)


def default_of(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in schema:
        return code(schema["default"])
    return ""


def properties_table(schema: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return ["(no fields)", ""]
    required = set(schema.get("required", []))
    lines = ["| field | type | default | notes |", "|---|---|---|---|"]
    for name, prop in properties.items():
        lines.append(
            f"| `{name}` | {cell(type_of(prop))} | {cell(default_of(prop, name in required))} | {cell(notes(prop))} |"
        )
    lines.append("")
    return lines


def schema_section(name: str, schema: dict[str, Any], level: str = "###") -> list[str]:
    lines = [f'<a id="{anchor(name)}"></a>', "", f"{level} {name}", ""]
    if schema.get("description"):
        lines += [str(schema["description"]).strip(), ""]
    if "enum" in schema:
        lines += [f"{schema.get('type', 'value')}, one of: " + ", ".join(code(v) for v in schema["enum"]), ""]
        return lines
    lines += properties_table(schema)
    return lines


# --------------------------------------------------------------------------- the document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                found.append((method.upper(), path, item[method]))
    return found


def needs_token(operation: dict[str, Any]) -> bool:
    return any(
        p.get("in") == "header" and p.get("name", "").lower() == TOKEN_HEADER for p in operation.get("parameters", [])
    )


def render(schema: dict[str, Any], message: dict[str, Any] | None = None) -> str:
    info = schema.get("info", {})
    ops = operations(schema)
    lines = [
        "<!-- Generated by docs/generate_api_md.py from the app's OpenAPI schema: do not edit by hand. -->",
        "",
        f"# API reference — {info.get('title', 'API')} {info.get('version', '')}".rstrip(),
        "",
        str(info.get("description", "")).strip(),
        "",
        "The running proxy serves the same description at `/openapi.json` (Swagger UI at `/docs`). In AWS the",
        "base URL is the stack's `ApiUrl` output, which ends with the stage (`…/v1/`); locally it is",
        "`http://GMP_HOST:GMP_PORT`.",
        "",
        "## Authentication",
        "",
        "Routes marked *token* need the `X-API-Token` header: the admin token (`GMP_API_TOKEN`), or a tenant's",
        "API key, which acts on its own tenant only. A missing or wrong token is answered `401` (compared in",
        "constant time). The header appears below as an optional parameter only because the check is done by",
        "the app itself.",
        "",
        "## Errors",
        "",
        'Every error has the body `{"ok": false, "error": "<message naming the field or the cause>"}`:',
        "",
        "| status | when |",
        "|---|---|",
        "| 400 | a request the route refuses as a whole (e.g. more than 1,000 messages, a bad `cursor`) |",
        "| 401 | missing or wrong `X-API-Token` |",
        "| 403 | a tenant API key used on another tenant, or on a route reserved to the admin token |",
        "| 404 | an unknown account or tenant |",
        '| 422 | validation failed: `error` names each field, `detail` lists `{"loc", "msg", "type"}` '
        "(the `HTTPValidationError` of the schema is FastAPI's default declaration; this is the body sent) |",
        "| 503 | DynamoDB/SQS unavailable: retry (`GET /status` answers 503 with the state of each dependency) |",
        "",
        'Behind API Gateway, throttling answers `429` and a timeout `504`, with `{"message": ...}`. The Python',
        "client (`client.MailProxyClient`) retries 429 and 5xx with backoff.",
        "",
        "## Routes",
        "",
        "| method | path | summary | token |",
        "|---|---|---|---|",
    ]
    for method, path, op in ops:
        lines.append(f"| {method} | `{path}` | {cell(op.get('summary', ''))} | {'token' if needs_token(op) else '—'} |")
    lines.append("")

    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for method, path, op in ops:
        tags.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, tagged in tags.items():
        lines += [f"## {tag.capitalize()}", ""]
        for method, path, op in tagged:
            lines += render_operation(method, path, op)

    components = schema.get("components", {}).get("schemas", {})
    if components:
        lines += ["## Schemas", ""]
        for name in sorted(components):
            lines += schema_section(name, components[name])

    if message is not None:
        lines += [
            "## The message of `add-messages`",
            "",
            "`AddMessagesRequest.messages` is typed *any* above because each message is validated on its own: a",
            "bad one is rejected alone (in `rejected`, with a reason naming the field) while the good ones of the",
            "same request are queued. Each item is this object (`mailproxy.models.MessageIn`); `from_addr` is",
            "accepted as an alias of `from`.",
            "",
        ]
        definitions = message.get("$defs", {})
        lines += schema_section(str(message.get("title", "MessageIn")), message)
        for name in sorted(definitions):
            if name not in components:
                lines += schema_section(name, definitions[name], level="####")
    return "\n".join(lines).rstrip() + "\n"


def render_operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method} {path}`", ""]
    summary = op.get("summary", "")
    lines += [f"{summary}{' — needs the token.' if needs_token(op) else ' — no token needed.'}", ""]
    if op.get("description"):
        lines += [str(op["description"]).strip(), ""]
    parameters = [p for p in op.get("parameters", []) if p.get("name", "").lower() != TOKEN_HEADER]
    if parameters:
        lines += ["| parameter | in | type | default | notes |", "|---|---|---|---|---|"]
        for p in parameters:
            schema = p.get("schema", {})
            note = notes({**schema, "description": p.get("description") or schema.get("description")})
            lines.append(
                f"| `{p['name']}` | {p.get('in', '')} | {cell(type_of(schema))} | "
                f"{cell(default_of(schema, bool(p.get('required'))))} | {cell(note)} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines += [f"Request body ({media}): {type_of(content.get('schema', {}))}", ""]
    lines += ["| response | body |", "|---|---|"]
    for status, response in op.get("responses", {}).items():
        content = response.get("content", {})
        shapes = [f"{media}: {type_of(c.get('schema', {}))}" for media, c in content.items()] or ["—"]
        description = response.get("description", "")
        lines.append(f"| {status} {cell(description)} | {cell('; '.join(shapes))} |")
    lines.append("")
    return lines


def generate() -> str:
    return render(openapi_schema(), message_schema())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not up to date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run python docs/generate_api_md.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
