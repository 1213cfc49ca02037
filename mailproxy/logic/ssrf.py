"""SSRF guard for the hosts the proxy connects to on a client's behalf (SMTP account hosts; the same check
suits attachment URLs): a name that resolves to an internal address is refused, so that an API caller
cannot make the sender talk to the instance metadata service, the VPC's private services or itself.

* ``aws`` mode: every address the name resolves to must be globally routable unicast. Loopback,
  link-local (169.254.0.0/16 with the instance metadata address, fe80::/10), private (RFC 1918,
  fc00::/7, the deprecated fec0::/10 site-local), shared (100.64.0.0/10), unspecified, multicast,
  reserved and documentation ranges are refused, also when they hide inside an IPv6 address
  (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``).
* ``local`` mode (``make run``, the tests): loopback and private addresses are allowed so that
  development works against local servers; link-local (the metadata address), unspecified and multicast
  addresses are still refused.
* A host named in the allowlist (``GMP_SMTP_HOST_ALLOWLIST``, comma-separated host names) is allowed
  whatever it resolves to: the operator's explicit decision.

The name is resolved with ``getaddrinfo`` (the resolver the connection itself uses, so numeric aliases
such as ``2130706433``, ``127.1`` or ``0x7f.0.0.1`` are seen as what they are) and *all* its addresses are
checked. To defeat DNS rebinding, the connect step must connect to the addresses ``vetted_addresses``
returned, not resolve the name a second time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

__all__ = [
    "ALLOWLIST_VARIABLE",
    "AddrInfo",
    "Resolver",
    "UnresolvableHost",
    "check_host",
    "classify",
    "normalize_host",
    "parse_allowlist",
    "vetted_addresses",
]

ALLOWLIST_VARIABLE = "GMP_SMTP_HOST_ALLOWLIST"

AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns
Resolver = Callable[..., Sequence[AddrInfo]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {
    ipaddress.ip_address("169.254.169.254"): "the instance metadata service",
    ipaddress.ip_address("fd00:ec2::254"): "the instance metadata service (IPv6)",
    ipaddress.ip_address("169.254.170.2"): "the ECS task metadata service",
    ipaddress.ip_address("169.254.170.23"): "the EKS pod identity agent",
}
_PRIVATE = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")  # RFC 1918, ULA, site-local
]
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class UnresolvableHost(ValueError):
    """The name does not resolve (now). At connect time this is a temporary failure, not a policy refusal."""


def normalize_host(host: str) -> str:
    """Lower case, no surrounding spaces, no trailing dot, no brackets around an IPv6 literal."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name


def parse_allowlist(value: str | Iterable[str] | None) -> frozenset[str]:
    """``GMP_SMTP_HOST_ALLOWLIST``: comma-separated host names (or IP literals), normalized."""
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(n for n in (normalize_host(i) for i in items) if n)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress, *, mode: Literal["local", "aws"] | str) -> str | None:
    """Why `address` is refused in `mode` (e.g. ``"link-local: the instance metadata service"``), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = classify(inner, mode=mode)
            return f"{why}, inside the IPv6 address" if why else None
    why = _refused_in_any_mode(address)
    if why is not None:
        return why
    if mode != "aws":
        return None  # local mode: loopback, private and the rest are development targets
    return _refused_in_aws_mode(address)


def _refused_in_any_mode(address: IPAddress) -> str | None:
    metadata = _METADATA.get(address)
    if metadata is not None:
        return f"link-local: {metadata}"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    return None


def _refused_in_aws_mode(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "loopback"
    if any(address.version == network.version and address in network for network in _PRIVATE):
        return "private"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "private: shared address space"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def _ip_of(sockaddr: Any) -> IPAddress:
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 scope id


def vetted_addresses(
    host: str,
    port: int | None = None,
    *,
    mode: str,
    allowlist: frozenset[str],
    resolve: Resolver | None = None,
) -> list[AddrInfo]:
    """Resolve `host` once and check every address; return the getaddrinfo entries to connect to.

    Raises ``UnresolvableHost`` when the name does not resolve, ``ValueError`` naming the host, the
    address and the reason when one of the addresses is refused."""
    resolver = resolve if resolve is not None else socket.getaddrinfo  # looked up now: tests may replace it
    name = normalize_host(host)
    if not name:
        raise ValueError("host: empty")
    try:
        infos = list(resolver(name, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"host: {host!r} does not resolve ({exc})") from None
    if not infos:
        raise UnresolvableHost(f"host: {host!r} does not resolve to any address")
    if name in allowlist:
        return infos
    for info in infos:
        address = _ip_of(info[4])
        why = classify(address, mode=mode)
        if why is not None:
            raise ValueError(
                f"host: {host!r} resolves to {address} ({why}), which is refused in {mode} mode; "
                f"name the host in {ALLOWLIST_VARIABLE} to allow it"
            )
    return infos


def check_host(host: str, *, mode: str, allowlist: frozenset[str], resolve: Resolver | None = None) -> None:
    """Refuse `host` (``ValueError``) when any address it resolves to is internal for `mode`; see the module.

    `resolve` defaults to ``socket.getaddrinfo`` (read at call time)."""
    vetted_addresses(host, None, mode=mode, allowlist=allowlist, resolve=resolve)


def guarded_addresses(mode: str, allowlist: frozenset[str]) -> Callable[[str, int], list[AddrInfo]]:
    """What the SMTP client connects to: the vetted addresses of the name, resolved once at connect time
    (so a name that changed its answer since the account was checked, DNS rebinding, is caught).
    A refusal is raised as `HostRefused`, which ends the message; a name that does not resolve stays a
    temporary failure."""
    from mailproxy.logic.smtp import HostRefused

    def addresses(host: str, port: int) -> list[AddrInfo]:
        try:
            return vetted_addresses(host, port, mode=mode, allowlist=allowlist)
        except UnresolvableHost:
            raise
        except ValueError as exc:
            raise HostRefused(str(exc)) from None

    return addresses
