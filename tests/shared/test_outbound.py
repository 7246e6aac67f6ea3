"""The SSRF guard (RELIABILITY R5): every spelling of a refused address is refused at configuration time, and
a host name that resolves to one is refused at connect time, before any connection is made."""

from __future__ import annotations

import socket

import httpx
import pytest
from pydantic import ValidationError

from shared.outbound import (
    GuardedTransport,
    RefusedAddress,
    Resolver,
    check_outbound_url,
    inet_aton,
    normalise_host,
    parse_address,
    resolve,
)
from shared.settings import Settings

# Every one of these reaches the cloud metadata service (or link-local, or "this host") on a Linux box.
METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data",
    "http://2852039166/",  # one integer
    "http://0xa9fea9fe/",  # hex
    "http://0XA9FEA9FE/",
    "http://0251.0376.0251.0376/",  # octal parts
    "http://0xa9.0xfe.0xa9.0xfe/",  # hex parts
    "http://169.254.43518/",  # a.b.c with a 16-bit last part
    "http://169.16689662/",  # a.b with a 24-bit last part
    "http://169.254.169.254./",  # trailing dot
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::169.254.169.254]/",  # IPv4-compatible IPv6
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated
    "http://[fe80::1%25eth0]/",  # IPv6 link-local with a zone
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "http://100.100.100.200/latest/meta-data",  # Alibaba Cloud metadata
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./computeMetadata/v1/",  # trailing dot
    "http://METADATA.GOOGLE.INTERNAL../",
    "http://metadata.tencentyun.com/latest/meta-data",
    "http://１６９．２５４．１６９．２５４/",  # full-width digits and dots, as IDNA maps them
    "http://169。254。169。254/",  # ideographic full stops
    "http://0.0.0.0/",  # Linux connects 0.0.0.0 to the local host
    "http://0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
]
LOOPBACK_SPELLINGS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/",
    "http://localhost./",
    "http://api.localhost/",
]
ALLOWED = [
    "https://platform.example.gov.cn/api",
    "https://10.20.30.40/api",  # government networks are often private: allowed
    "http://192.168.1.10:8080/x",
    "https://[2001:db8::1]/x",
    "https://8.8.8.8/",
    "https://1.2.3.4.5/",  # not numeric: a (strange) name, checked when it resolves
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_every_spelling_of_a_refused_address_is_refused(url: str) -> None:
    for allow_loopback in (False, True):
        with pytest.raises(ValueError, match="refused"):
            check_outbound_url(url, allow_loopback=allow_loopback)


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_loopback_only_when_configured(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_outbound_url(url)
    check_outbound_url(url, allow_loopback=True)


@pytest.mark.parametrize("url", ALLOWED)
def test_ordinary_destinations_pass(url: str) -> None:
    check_outbound_url(url)


@pytest.mark.parametrize("url", ["ftp://x/y", "file:///etc/passwd", "nohost", "http:///path", "http://[::1/"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        check_outbound_url(url)


@pytest.mark.parametrize(
    "host",
    [
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "169.254.43518",
        "169.16689662",
        "0xa9.0xfe.0xa9.0xfe",
        "017700000001",
        "127.1",
        "0",
        "00",
        "1.2.3.4",
        "0x",
        "08",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.0x1ffffff",
        "0x100000000",
        "4294967295",
        "4294967296",
        "example",
        "",
    ],
)
def test_numeric_hosts_read_as_the_c_resolver_reads_them(host: str) -> None:
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(host)) if host else None
    except OSError:
        expected = None
    got = inet_aton(host)
    assert (str(got) if got else None) == expected


def test_host_normalisation() -> None:
    assert normalise_host("Metadata.Google.Internal..") == "metadata.google.internal"
    assert normalise_host("[::1]") == "::1"
    assert str(parse_address("０ｘａ９ｆｅａ９ｆｅ")) == "169.254.169.254"
    assert parse_address("upstream.example") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal./",
        "http://localhost/",
        "http://2130706433/",
    ],
)
def test_the_feedback_upstream_url_is_checked_at_settings_load(url: str) -> None:
    with pytest.raises(ValidationError, match="ONECHECK_FEEDBACK_UPSTREAM_URL"):
        Settings(feedback_upstream_url=url)


def test_the_feedback_upstream_may_be_loopback_when_configured() -> None:
    settings = Settings(feedback_upstream_url="http://127.0.0.1:9000/", outbound_allow_loopback=True)
    assert settings.feedback_upstream_url == "http://127.0.0.1:9000"


def test_loopback_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().outbound_allow_loopback is False
    monkeypatch.setenv("ONECHECK_OUTBOUND_ALLOW_LOOPBACK", "true")
    assert Settings().outbound_allow_loopback is True


# --- connect time ----------------------------------------------------------------------------------------


def fake_dns(answers: dict[str, list[str]], asked: list[str]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("host", "answer"),
    [
        ("metadata.attacker.example", ["169.254.169.254"]),
        ("rebind.attacker.example", ["93.184.215.14", "169.254.169.254"]),  # one bad answer is enough
        ("v6.attacker.example", ["::ffff:169.254.169.254"]),
        ("alibaba.attacker.example", ["100.100.100.200"]),
        ("loop.attacker.example", ["127.0.0.1"]),
        ("zero.attacker.example", ["0.0.0.0"]),
    ],
)
async def test_a_name_that_resolves_to_a_refused_address_is_refused_at_connect(
    host: str, answer: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    transport = GuardedTransport(allow_loopback=False, resolver=fake_dns({host: answer}, asked))
    connected: list[str] = []

    async def no_connect(*args: object, **kwargs: object) -> None:
        connected.append(str(args))
        raise AssertionError("connected despite the refusal")

    monkeypatch.setattr(transport.backend.inner, "connect_tcp", no_connect)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(RefusedAddress, match=r"refused: .* resolves to"):
            await client.get(f"http://{host}/latest/meta-data")
        with pytest.raises(RefusedAddress):
            await client.post(f"https://{host}/feedback", json={})
    assert asked == [host, host]
    assert connected == []


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.16689662"])
async def test_the_resolver_reads_numeric_spellings_as_the_metadata_address(host: str) -> None:
    """Why a check of dotted quads only is not enough: getaddrinfo connects these to 169.254.169.254."""
    assert await resolve(host, 80) == ["169.254.169.254"]


@pytest.mark.parametrize(
    "host", ["2852039166", "0xa9fea9fe", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "169.254.169.254."]
)
async def test_numeric_hosts_are_refused_at_connect(host: str) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True), timeout=2) as client:
        with pytest.raises(RefusedAddress, match=r"169\.254\.169\.254"):
            await client.get(f"http://{host}/")


async def test_localhost_resolves_to_loopback_and_is_refused_unless_allowed() -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=False), timeout=2) as client:
        with pytest.raises(RefusedAddress, match="loopback"):
            await client.get("http://localhost:9/")


async def test_an_allowed_address_is_connected_to() -> None:
    """With loopback allowed, a closed local port is an ordinary connect error (the check let it through)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True), timeout=2) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get(f"http://127.0.0.1:{port}/")
    assert not isinstance(raised.value, RefusedAddress)
