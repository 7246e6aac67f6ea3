"""Where OneCheck may connect: the SSRF guard for every outbound call (upstream feeds, subscription callbacks,
the feedback upstream). RELIABILITY R5.

Two layers, both needed:

    check_outbound_url(url)    at configuration time (settings load, POST /v1/sources, POST /v1/subscriptions,
                               and again before each callback): scheme, host names, and IP literals in every
                               spelling the resolver accepts
    guarded_transport(...)     at connect time: an httpx transport whose network backend resolves the host
                               itself, refuses if any address it resolves to is refused, and connects to the
                               checked address, so a DNS name that points at 169.254.169.254 (or rebinds to it
                               between the check and the call) is refused too. There is no second resolution
                               between the check and the connect, hence no TOCTOU window.

Refused, always: link-local addresses (169.254.0.0/16 with the cloud metadata services, fe80::/10), known
metadata addresses outside link-local (Alibaba Cloud's 100.100.100.200, Oracle's 192.0.0.192, AWS's
fd00:ec2::254) and host names (metadata.google.internal …), the unspecified and "this network" addresses
(0.0.0.0/8, ::; Linux connects 0.0.0.0 to the local host), multicast, broadcast and reserved ranges.
Refused unless `ONECHECK_OUTBOUND_ALLOW_LOOPBACK` (development, tests, a sidecar): loopback (127.0.0.0/8,
::1, localhost). Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) stay allowed: government platforms
often live there; narrow sources with `ONECHECK_SYNC_ALLOWED_HOSTS` and callbacks with https.

Numeric hosts are read as the C resolver reads them (inet_aton: `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`,
`169.254.43518`), IPv4 embedded in IPv6 (`::ffff:169.254.169.254`, `::169.254.169.254`, NAT64 `64:ff9b::/96`,
6to4, Teredo) is judged by its IPv4 address, and trailing dots (`metadata.google.internal.`) and full-width
dots or digits are normalised away before any comparison.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, GCP, Huawei Cloud, OpenStack (also link-local)
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud (in the shared 100.64.0.0/10 range, not link-local)
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765)
_DOTS = {0x3002: ".", 0xFF0E: ".", 0xFF61: "."}  # ideographic and full-width full stops, as IDNA maps them


class RefusedAddress(httpx.ConnectError):
    """The host resolves to an address OneCheck must not connect to. Raised before any connection is made;
    never worth retrying."""


def normalise_host(host: str) -> str:
    """A host as the resolver sees it: NFKC (full-width digits and dots), IDNA dots, lower case, no brackets,
    no trailing dots (`metadata.google.internal.` is the same name)."""
    host = unicodedata.normalize("NFKC", host).translate(_DOTS).lower().strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def _number(part: str) -> int | None:
    """One part of an inet_aton address: 0x-hex, 0-octal or decimal, ASCII only."""
    if part.startswith("0x"):
        digits, base, allowed = part[2:], 16, "0123456789abcdef"
    elif len(part) > 1 and part.startswith("0"):
        digits, base, allowed = part[1:], 8, "01234567"
    else:
        digits, base, allowed = part, 10, "0123456789"
    if not part or (base == 16 and not digits) or any(c not in allowed for c in digits):
        return None
    return int(digits, base) if digits else 0  # "0" alone


def inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C resolver (glibc `inet_aton`, which `getaddrinfo` uses for numeric hosts) reads
    in `host`: 1 to 4 parts of decimal, octal or hex, the last one filling the remaining bytes
    (`2852039166`, `0xa9fea9fe`, `169.254.43518`, `0251.0376.0251.0376`). None if it is not numeric."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_number(p) for p in parts]
    if any(v is None for v in values):
        return None
    *head, last = (v for v in values if v is not None)
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(parts)):
        return None
    value = last
    for i, v in enumerate(head):
        value |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_address(host: str) -> IPAddress | None:
    """The IP address a (normalised) host denotes, in any spelling the resolver accepts; None for a name."""
    host = normalise_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return inet_aton(host)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped, compatible, translated, NAT64, 6to4, Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    tail = ipaddress.IPv4Address(address.packed[12:])
    if address.packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (deprecated "compatible")
        return tail
    if address in _SIIT or address in _NAT64:
        return tail
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refusal(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why OneCheck must not connect to `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a scope id (`fe80::1%eth0`)
        inner = embedded_ipv4(address)
        if inner is not None:  # judged as the IPv4 address it reaches
            why = refusal(inner, allow_loopback=allow_loopback)
            return f"{why} ({inner}, embedded in {address})" if why else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_loopback:
        return (
            None if allow_loopback else "a loopback address (set ONECHECK_OUTBOUND_ALLOW_LOOPBACK to allow)"
        )
    if address.is_reserved:  # 240.0.0.0/4 with the broadcast address, and IPv6's reserved blocks
        return "a reserved address"
    return None


def check_host(host: str, *, allow_loopback: bool) -> None:
    """ValueError if `host` (a name or an IP literal in any spelling) is one OneCheck must never call."""
    name = normalise_host(host)
    if not name:
        raise ValueError("no host")
    if name in METADATA_HOSTS:
        raise ValueError(f"refused host {host!r}: a cloud metadata service")
    if (name == "localhost" or name.endswith(".localhost")) and not allow_loopback:
        raise ValueError(f"refused host {host!r}: loopback (set ONECHECK_OUTBOUND_ALLOW_LOOPBACK to allow)")
    address = parse_address(name)
    if address is not None:
        why = refusal(address, allow_loopback=allow_loopback)
        if why:
            raise ValueError(f"refused address {host!r}: {why}")


def check_outbound_url(url: str, *, allow_loopback: bool = False) -> None:
    """ValueError for URLs OneCheck must never call: not http(s), no host, or a refused host (above)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced "[" in the netloc
        raise ValueError(f"not an http(s) URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    check_host(host, allow_loopback=allow_loopback)


# --- connect time ----------------------------------------------------------------------------------------


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (numeric hosts included, as the C resolver reads them)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check between resolution and connect."""

    def __init__(self, *, allow_loopback: bool, resolver: Resolver | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.resolver = resolver  # None: `resolve`, looked up at each connect
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        started = time.monotonic()
        literal = parse_address(host)  # in case the resolver reads a spelling differently from ours
        why = refusal(literal, allow_loopback=self.allow_loopback) if literal is not None else None
        if why:
            raise RefusedAddress(f"refused: {host!r} is {literal}, {why}")
        try:
            with anyio.fail_after(timeout):
                addresses = await (self.resolver or resolve)(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        for text in addresses:
            why = refusal(ipaddress.ip_address(text.split("%", 1)[0]), allow_loopback=self.allow_loopback)
            if why:
                # Any bad answer refuses the host: a rebinding name may offer a good address first.
                raise RefusedAddress(f"refused: {host!r} resolves to {text}, {why}")
        error: Exception | None = None
        for text in addresses:
            remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 0.001)
            try:
                return await self.inner.connect_tcp(
                    text, port, timeout=remaining, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `GuardedBackend`: no environment proxies (a proxy would be the peer we check),
    TLS verified against certifi as httpx does, SNI and certificate checks for the URL's host name."""

    def __init__(
        self, *, allow_loopback: bool, limits: httpx.Limits | None = None, resolver: Resolver | None = None
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(limits=limits, trust_env=False)
        self.backend = GuardedBackend(allow_loopback=allow_loopback, resolver=resolver)
        # httpx has no public parameter for the network backend; its transport hands every request to this
        # pool (httpx 0.28), so replacing the pool is the one place to put the check.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )
