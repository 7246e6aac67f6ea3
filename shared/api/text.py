"""Text a client sends: PostgreSQL `text` and `jsonb` cannot hold U+0000, nor a lone UTF-16 surrogate (which
has no UTF-8 form; JSON can still spell one, as `"\\ud800"`), so neither ever gets that far.

Use `NulFree` (or `NoNul` in an `Annotated[...]` with other constraints) for every string a request body or a
query filter carries: a NUL answers 422 `validation_error` like any other invalid value. Ids in a path are not
validated this way: an id with a NUL is no id at all, and answers exactly as a missing one does (404), which
parsing does already (`shared.ids.parse_uuid`) or `has_nul` lets a service decide. What the audit log keeps of
a request (its path, the id it asked for) goes through `scrub_nul`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

NUL = "\x00"
# What a NUL is stored as where a refused request is recorded as it came (the audit log).
NUL_REPLACEMENT = "\ufffd"


def has_nul(value: str) -> bool:
    return NUL in value


def refuse_nul(value: str) -> str:
    """The value, or a ValueError (a 422 `validation_error` at the edge) when it holds a NUL or a lone
    surrogate (not Unicode text: it cannot be stored, and used to fail at the insert as a 500)."""
    if NUL in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be Unicode text (an unpaired surrogate is not)") from None
    return value


def scrub_nul(value: str) -> str:
    """The value with every NUL replaced by U+FFFD, for recording what a client sent (never for matching)."""
    return value.replace(NUL, NUL_REPLACEMENT) if NUL in value else value


NoNul = AfterValidator(refuse_nul)
NulFree = Annotated[str, NoNul]
