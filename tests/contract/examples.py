"""docs/examples/ and the bundles the services' OpenAPI documents are built from.

The examples are written from real runs by the contract tests (`ONECHECK_WRITE_EXAMPLES=1`). The deployed image
carries no docs/, so each service reads its examples from a bundle in its package
(`services/<service>/openapi_examples.json`): the same files, collected into one JSON object by `bundle()`.
`test_the_bundles_are_the_examples` keeps the two equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
WRITE = os.environ.get("ONECHECK_WRITE_EXAMPLES") == "1"

# service → (its examples folder, its package)
SERVICES = {
    "check-api": (EXAMPLES, "check_api"),
    "list-sync": (EXAMPLES / "list-sync", "list_sync"),
    "feedback": (EXAMPLES / "feedback", "feedback"),
}


def shape(value: Any) -> Any:
    """Keys, nesting and JSON types of a value, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if value is None:
        return "null"
    return type(value).__name__


def bundle_path(service: str) -> Path:
    return ROOT / "services" / SERVICES[service][1] / "openapi_examples.json"


def bundle(service: str) -> dict[str, Any]:
    """The service's examples folder as one object: file stem → the example (an HTML file: its text as the
    body of a 200 `text/html` answer)."""
    folder = SERVICES[service][0]
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(folder.glob("*.html")):
        out[path.stem] = {
            "title": f"docs/examples/{path.name}",
            "response": {
                "status": 200,
                "content_type": "text/html; charset=utf-8",
                "body": path.read_text(encoding="utf-8"),
            },
        }
    return out


def render_bundle(service: str) -> str:
    return json.dumps(bundle(service), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def write_bundle(service: str) -> None:
    bundle_path(service).write_text(render_bundle(service), encoding="utf-8")


def write_examples(
    folder: Path,
    heading: str,
    generator: str,
    items: Sequence[tuple[str, str, dict[str, Any], httpx.Response, str]],
) -> None:
    """(name, title, request, response, "METHOD /template") → folder/name.json and folder/README.md."""
    folder.mkdir(parents=True, exist_ok=True)
    index = [
        f"# {heading}",
        "",
        f"Generated from real runs on the demo data by `{generator}` (`ONECHECK_WRITE_EXAMPLES=1`). "
        "Do not edit by hand.",
        "",
    ]
    for name, title, request, response, operation in items:
        example = {
            "title": title,
            "request": request,
            "response": {
                "status": response.status_code,
                "content_type": response.headers["content-type"],
                "body": response.json(),
            },
        }
        (folder / f"{name}.json").write_text(
            json.dumps(example, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        index.append(f"- [`{name}.json`]({name}.json): {title} (`{operation}` → {response.status_code})")
    (folder / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
