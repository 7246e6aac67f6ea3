"""Structured JSON logs (structlog) with a request id, and no personal ID number ever in clear.

Every record, ours or a library's, passes `mask_personal_ids`, which masks anything shaped like a citizen ID
(18 or 15 digits) as first 6 + last 4. Names of natural persons are never logged at all.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# 18-char citizen ids (17 digits + digit/X) and 15-digit legacy ones, not inside longer alphanumeric runs.
_ID_PATTERN = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8}|\d{5})(\d{3}[0-9Xx]|\d{4})(?![0-9A-Za-z])")


def mask_text(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        whole = match.group(0)
        return whole[:6] + "*" * (len(whole) - 10) + whole[-4:]

    return _ID_PATTERN.sub(repl, text)


# What subject-code validation quotes of a code (`birth date '19801301' (positions 7-14)`, `got '440703'`) and
# the dates it names (`birth date 2099-01-01 is after today`).
_QUOTED_WITH_DIGIT = re.compile(r"'[^'\n]*\d[^'\n]*'|\"[^\"\n]*\d[^\"\n]*\"")
_ISO_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")
_ALNUM = re.compile(r"[0-9A-Za-z]")


def mask_code_details(text: str) -> str:
    """`mask_text`, and also the pieces of a code that a validation message quotes (every quoted literal with
    a digit in it) and the dates it names: a quarantine reason or a code error shown to a client without
    `pii:read`, or logged. `birth date '19801301' (positions 7-14)` → `birth date '********' (positions 7-14)`."""
    text = mask_text(text)
    text = _QUOTED_WITH_DIGIT.sub(lambda m: _ALNUM.sub("*", m.group(0)), text)
    return _ISO_DATE.sub("****-**-**", text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def mask_personal_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_value(value)
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_ids,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log carries query strings; ours (shared.api.middleware) is structured and masked.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
