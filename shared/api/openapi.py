"""Helpers for the OpenAPI documents of the services: examples, and what the central step needs to know.

Examples come from docs/examples/, where the contract tests write them from real runs. The deployed image has
no docs/, so each service carries the same files collected into one bundle in its package
(`openapi_examples.json`; tests/contract keep it equal to docs/examples). `ExampleBook` reads a bundle and
hands out the pieces a route decorator takes:

    EX = ExampleBook("services.check_api")

    @router.post(
        "/v1/checks",
        responses={**EX.success(200, "check-penalty", "check-clear"), 404: EX.problem("…", "error-unknown-item")},
        openapi_extra=openapi_extra(IDEMPOTENCY_KEY_DOC, EX.request_body("check-penalty")),
    )

Errors every operation shares (401, 403, 409, 413, 422, 429, 503) are added by `document_problems` in
shared/api/problems.py from what the document and the routes say; a route documents only its own.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from shared.api.auth import require_scope

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
BUNDLE = "openapi_examples.json"
Responses = dict[int | str, dict[str, Any]]


@cache
def _bundle(package: str) -> dict[str, Any]:
    text = resources.files(package).joinpath(BUNDLE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class ExampleBook:
    """The examples of one service, by name (the file stem in docs/examples/)."""

    def __init__(self, package: str) -> None:
        self.examples = _bundle(package)

    def __getitem__(self, name: str) -> dict[str, Any]:
        example: dict[str, Any] = self.examples[name]
        return example

    def _media(self, names: tuple[str, ...], part: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            example = self[name]
            value = example["response"]["body"] if part == "response" else self.request_value(name)
            out[name] = {"summary": example["title"], "value": copy.deepcopy(value)}
        return out

    def request_value(self, name: str) -> Any:
        request = self[name]["request"]
        return request["multipart"] if "multipart" in request else request["body"]

    def request_body(self, *names: str, media_type: str = JSON) -> dict[str, Any]:
        """For `openapi_extra`: the request bodies of these examples."""
        return {"requestBody": {"content": {media_type: {"examples": self._media(names, "request")}}}}

    def success(
        self, status: int, *names: str, description: str | None = None, media_type: str | None = None
    ) -> Responses:
        """For `responses`: the success answer of these examples (the first one's media type)."""
        media = media_type or self[names[0]]["response"]["content_type"].split(";")[0]
        response: dict[str, Any] = {"content": {media: {"examples": self._media(names, "response")}}}
        if description:
            response["description"] = description
        return {status: response}

    def problem(self, description: str, *names: str) -> dict[str, Any]:
        """One error response: its description and the problems of these examples."""
        return {
            "description": description,
            "content": {PROBLEM_JSON: {"examples": self._media(names, "response")}},
        }


def success(
    status: int,
    examples: Mapping[str, tuple[str, Any]],
    *,
    media_type: str = JSON,
    description: str | None = None,
) -> Responses:
    """For `responses`, examples given inline: name → (summary, value)."""
    response: dict[str, Any] = {
        "content": {
            media_type: {"examples": {n: {"summary": s, "value": v} for n, (s, v) in examples.items()}}
        }
    }
    if description:
        response["description"] = description
    return {status: response}


def problem_response(
    description: str, *cases: tuple[int, str, str, str] | tuple[int, str, str, str, dict[str, Any]]
) -> dict[str, Any]:
    """One error response for `responses`, its examples given inline: (status, code, title, detail[, extra])
    as the code that raises it answers."""
    examples: dict[str, Any] = {}
    for case in cases:
        status, code, title, detail = case[:4]
        extra: dict[str, Any] = case[4] if len(case) > 4 else {}
        value = {
            "type": "/problems/" + code,
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
        examples[code if code not in examples else f"{code}-{len(examples)}"] = {
            "summary": detail,
            "value": {**value, **extra},
        }
    return {"description": description, "content": {PROBLEM_JSON: {"examples": examples}}}


def openapi_extra(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `openapi_extra` pieces: dicts deeply, lists (parameters) end to end."""
    out: dict[str, Any] = {}
    for part in parts:
        _merge(out, part)
    return out


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = [*into[key], *copy.deepcopy(value)]
        else:
            into[key] = copy.deepcopy(value)


# --- what the routes require (for the central step) --------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _scopes_of(call: Callable[..., Any]) -> tuple[str, ...] | None:
    """The scopes a `require_scope(...)` dependency admits (read from its closure), else None."""
    if not getattr(call, "__qualname__", "").startswith(require_scope.__qualname__ + ".<locals>."):
        return None
    scopes = inspect.getclosurevars(call).nonlocals.get("scopes")
    return tuple(scopes) if isinstance(scopes, tuple) else None


def route_scopes(app: FastAPI) -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) → the scopes the operation admits (any one of them), for operations that need one."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        path = context.path_format or route.path_format
        for call in _calls(route.dependant):
            scopes = _scopes_of(call)
            if scopes:
                for method in context.methods or route.methods or ():
                    out[method.lower(), path] = scopes
    return out


def restore_examples(doc: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Put the routes' examples back as they were given: FastAPI renders the document with `exclude_none`,
    which drops every null member of an example (`"expires_on": null`), and an answer's example without its
    required nullable fields would not match its own schema."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path = context.path_format or route.path_format
        for method in context.methods or route.methods or ():
            operation = doc.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:
                continue
            for status, response in (route.responses or {}).items():
                documented = operation.get("responses", {}).get(str(status), {})
                _restore(response.get("content", {}), documented.get("content", {}))
            body = (route.openapi_extra or {}).get("requestBody", {})
            _restore(body.get("content", {}), operation.get("requestBody", {}).get("content", {}))
    return doc


def _restore(given: Mapping[str, Any], documented: dict[str, Any]) -> None:
    for media_type, media in given.items():
        if isinstance(media, Mapping) and "examples" in media and media_type in documented:
            documented[media_type]["examples"] = copy.deepcopy(media["examples"])
