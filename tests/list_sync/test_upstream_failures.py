"""Upstream failure modes (RELIABILITY.md R1, R2, R5, R6): bounded retries, clean failure, nothing applied."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import time
from typing import Any

import httpx
import pytest
import respx

from services.list_sync.upstream import (
    MAX_RETRY_AFTER_SECONDS,
    RefusedURL,
    UpstreamStatusError,
    check_source_url,
    parse_retry_after,
    retry_hook,
)
from shared import outbound
from shared.db.engine import Database
from shared.settings import Settings
from tests.list_sync.helpers import (
    BASE,
    add_source,
    by_cursor,
    entries_of,
    envelope,
    fetch,
    page,
    record,
    run,
)

GOOD = envelope([record("G-1"), record("G-2")])


async def _run_against(
    db: Database, settings: Settings, answers: Any, kind: str = "feed"
) -> tuple[dict[str, Any], int]:
    await add_source(db, "platform", kind)
    serve = by_cursor({None: answers})
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=serve)
        view = await run(db, settings, "platform")
    return view, len(serve.calls)  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_retryable_answers_are_retried_a_bounded_number_of_times(
    db: Database, catalogue: None, sync_settings: Settings, status: int
) -> None:
    view, calls = await _run_against(db, sync_settings, page(b"busy", status=status))
    assert calls == sync_settings.sync_max_retries + 1 == 3
    assert view["status"] == "failed"
    assert view["error"] == f"UpstreamStatusError: upstream answered HTTP {status} on all 3 attempt(s)"
    assert await entries_of(db, "platform") == {}


@pytest.mark.parametrize("kind", ["feed", "snapshot"])
async def test_a_retry_that_succeeds_completes_the_run(
    db: Database, catalogue: None, sync_settings: Settings, kind: str
) -> None:
    answers = [page(b"", status=503), page(b"", status=429, retry_after="1"), page(GOOD)]
    view, calls = await _run_against(db, sync_settings, answers, kind)
    assert calls == 3
    assert view["status"] == "succeeded"
    assert view["counts"]["inserted"] == 2


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (httpx.ConnectTimeout("connect"), "UpstreamTimeout: ConnectTimeout on all 3 attempt(s)"),
        (httpx.ReadTimeout("read"), "UpstreamTimeout: ReadTimeout on all 3 attempt(s)"),
        (httpx.ConnectError("refused"), "UpstreamUnreachable: ConnectError on all 3 attempt(s)"),
        (httpx.RemoteProtocolError("reset"), "UpstreamUnreachable: RemoteProtocolError on all 3 attempt(s)"),
    ],
)
async def test_transport_errors_are_retried_then_fail_the_run(
    db: Database, catalogue: None, sync_settings: Settings, error: Exception, name: str
) -> None:
    view, calls = await _run_against(db, sync_settings, error)
    assert calls == 3
    assert (view["status"], view["error"]) == ("failed", name)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (page("truncated.json"), "MalformedPage: the body is not valid JSON (JSONDecodeError)"),
        (
            page("html-error.html", content_type="text/html"),
            "MalformedPage: content type 'text/html' is not JSON",
        ),
        (page(GOOD, content_type="text/plain"), "MalformedPage: content type 'text/plain' is not JSON"),
        (page(b""), "MalformedPage: empty body"),
        (page(b'{"entries": "\xff"}'), "MalformedPage: the body is not valid JSON (UnicodeDecodeError)"),
        (
            page(b"[1, 2]"),
            'MalformedPage: the body is not {"entries": [...], "next_cursor": ..., "has_more": ...}',
        ),
        (page({"entries": [], "has_more": "no"}), "MalformedPage: has_more is missing or not a boolean"),
        (
            page({"entries": [], "has_more": False, "next_cursor": 7}),
            "MalformedPage: next_cursor is not a string",
        ),
        (page(b"[" * 100_000), "MalformedPage: the body is not valid JSON (RecursionError)"),
    ],
    ids=["truncated", "html", "text-plain", "empty", "not-utf8", "array", "has-more", "cursor", "deep"],
)
async def test_a_bad_200_fails_cleanly_and_is_kept(
    db: Database, catalogue: None, sync_settings: Settings, answer: httpx.Response, error: str
) -> None:
    view, calls = await _run_against(db, sync_settings, answer)
    assert calls == 1  # an upstream bug, not a transient fault: no retry
    assert (view["status"], view["error"]) == ("failed", error)
    [stored] = await fetch(db, "SELECT body FROM sync_pages WHERE run_id = $1::uuid", view["run_id"])
    assert stored["body"] == answer.content
    assert await entries_of(db, "platform") == {}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(
    db: Database, catalogue: None, sync_settings: Settings, status: int
) -> None:
    await add_source(db, "platform")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/entries").mock(
            return_value=httpx.Response(status, headers={"location": "http://169.254.169.254/"})
        )
        elsewhere = mock.get("http://169.254.169.254/").mock(return_value=page(GOOD))
        view = await run(db, sync_settings, "platform")
    assert not elsewhere.called
    assert (view["status"], view["error"]) == (
        "failed",
        f"UpstreamRedirect: upstream answered HTTP {status}; redirects are not followed",
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(
    db: Database, catalogue: None, sync_settings: Settings, status: int
) -> None:
    view, calls = await _run_against(db, sync_settings, page(b"no", status=status))
    assert calls == 1
    assert view["error"] == f"UpstreamStatusError: upstream answered HTTP {status}"


async def test_an_oversized_page_is_refused_by_its_length(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    settings = sync_settings.model_copy(update={"sync_max_page_bytes": 1024})
    big = page(envelope([record(f"B-{i}") for i in range(50)]))
    view, calls = await _run_against(db, settings, big)
    assert calls == 1
    assert view["error"].startswith("PageTooLarge: page of ")
    assert "over the cap of 1,024 bytes" in view["error"]


async def test_a_slow_drip_is_cut_at_the_run_deadline(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    settings = sync_settings.model_copy(update={"sync_run_deadline_seconds": 0.5})

    async def drip() -> Any:
        for _ in range(100):
            yield b" "
            await asyncio.sleep(0.1)

    started = time.monotonic()
    answer = httpx.Response(200, content=drip(), headers={"content-type": "application/json"})
    view, _ = await _run_against(db, settings, answer)
    assert time.monotonic() - started < 1.5  # deadline + 1 s
    assert view["status"] == "failed"
    assert view["error"] == (
        "RunDeadlineExceeded: the run took longer than ONECHECK_SYNC_RUN_DEADLINE_SECONDS (0.5 s)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://2852039166/latest",
        "http://0xa9fea9fe/latest",
        "http://0251.0376.0251.0376/latest",
        "http://[::ffff:169.254.169.254]/latest",
        "http://[fe80::1]/feed",
        "http://metadata.google.internal/x",
        "http://metadata.google.internal./x",
        "ftp://upstream.test/x",
        "https://user:pw@upstream.test/x",
        "https://upstream.test/x?token=1",
    ],
)
async def test_refused_base_urls_fail_the_run_without_a_call(
    db: Database, catalogue: None, sync_settings: Settings, url: str
) -> None:
    await add_source(db, "platform", base_url=url)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route().mock(return_value=page(GOOD))
        view = await run(db, sync_settings, "platform")
    assert not route.called
    assert view["status"] == "failed"
    assert view["error"].startswith("RefusedURL: ")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/api", "http://2130706433/api", "http://localhost./api"]
)
def test_loopback_base_urls_only_when_configured(sync_settings: Settings, url: str) -> None:
    refusing = sync_settings.model_copy(update={"outbound_allow_loopback": False})
    with pytest.raises(RefusedURL, match="loopback"):
        check_source_url(url, refusing)
    assert check_source_url(url, sync_settings) == url


async def test_a_source_whose_name_resolves_to_the_metadata_address_is_refused_at_connect(
    db: Database, catalogue: None, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name passes every static check; what it resolves to does not. Refused before connecting, once."""
    asked: list[str] = []

    async def dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return {"feed.rebind.example": ["169.254.169.254"]}[host]

    monkeypatch.setattr(outbound, "resolve", dns)
    await add_source(db, "platform", base_url="https://feed.rebind.example/api")
    view = await run(db, sync_settings, "platform")  # no transport given: the real, guarded one
    assert view["status"] == "failed"
    assert view["error"] == (
        "RefusedURL: refused: 'feed.rebind.example' resolves to 169.254.169.254, a cloud metadata address"
    )
    assert asked == ["feed.rebind.example"]  # not retried: it can never succeed
    assert await entries_of(db, "platform") == {}


def test_the_host_allowlist(sync_settings: Settings) -> None:
    settings = sync_settings.model_copy(update={"sync_allowed_hosts": ["upstream.test"]})
    assert check_source_url("https://upstream.test/api/", settings) == "https://upstream.test/api"
    assert check_source_url("https://UPSTREAM.test./api", settings) == "https://UPSTREAM.test./api"
    with pytest.raises(RefusedURL, match="not in ONECHECK_SYNC_ALLOWED_HOSTS"):
        check_source_url("https://elsewhere.test/api", settings)


def test_retry_after_is_honoured_and_capped() -> None:
    assert retry_hook(UpstreamStatusError(429, retryable=True, retry_after=7.0)) == 7.0
    assert retry_hook(UpstreamStatusError(503, retryable=True)) is True
    assert retry_hook(UpstreamStatusError(404, retryable=False)) is False
    assert retry_hook(httpx.ConnectTimeout("x")) is True
    assert retry_hook(ValueError("x")) is False
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("99999") == MAX_RETRY_AFTER_SECONDS
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert 25 <= (parse_retry_after(email.utils.format_datetime(when, usegmt=True)) or 0) <= 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_retry_after_sets_the_wait(
    db: Database, catalogue: None, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With stamina's real backoff (testing mode off), the wait after a 429 is its Retry-After."""
    import stamina

    stamina.set_testing(False)
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("stamina._core._smart_sleep", fake_sleep)
    answers = [page(b"", status=429, retry_after="3"), page(GOOD)]
    view, calls = await _run_against(db, sync_settings, answers)
    assert view["status"] == "succeeded"
    assert calls == 2
    assert slept == [3.0]
