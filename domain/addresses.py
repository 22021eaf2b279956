"""Host and address checks both the page (ui/) and the API (api/) rely on: whether an address is this machine's,
and whether it is a public one, seeing through the IPv6 forms that carry an IPv4 address inside.

`ipaddress`'s `is_global` alone lets `::127.0.0.1`, `64:ff9b::7f00:1` or `2002:7f00:1::` through: each is a
"global" IPv6 address that a host or its network gateway turns back into 127.0.0.1. Pure standard library: knows
nothing of HTTP, of the API or of what the address is for.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

# The IPv6 ranges whose last 32 bits are an IPv4 address the packet goes to (or comes from).
IPV4_IN_LAST_32_BITS = (
    ip_network("::/96"),  # IPv4-compatible (deprecated, RFC 4291 2.5.5.1); also holds :: and ::1
    ip_network("::ffff:0:0/96"),  # IPv4-mapped (RFC 4291 2.5.5.2): how dual-stack sockets show IPv4
    ip_network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 2765)
    ip_network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052): what DNS64 answers for IPv4-only sites
)
# NAT64 for a site's own use (RFC 8215): where the IPv4 address sits depends on the site's prefix length.
NAT64_LOCAL_USE = ip_network("64:ff9b:1::/48")
# ISATAP interface identifiers (RFC 5214): 0000:5efe or 0200:5efe, then the IPv4 address.
ISATAP_MARKERS = (0x00005EFE, 0x02005EFE)


def embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """Every IPv4 address this IPv6 address carries (none for a plain IPv6 address)."""
    found: list[IPv4Address] = []
    low32 = IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in IPV4_IN_LAST_32_BITS):
        found.append(low32)
    if address.sixtofour is not None:  # 2002::/16, 6to4: the relay sends it to that IPv4 address
        found.append(address.sixtofour)
    if address.teredo is not None:  # 2001::/32: (server, client), the client's address stored inverted
        found.extend(address.teredo)
    if (int(address) >> 32) & 0xFFFFFFFF in ISATAP_MARKERS:
        found.append(low32)
    return found


def is_public_address(address: str) -> bool:
    """Whether `address` (a literal, possibly with an IPv6 %zone) and any IPv4 address inside it are all public."""
    ip = ip_address(address.split("%")[0])
    if isinstance(ip, IPv6Address) and ip in NAT64_LOCAL_USE:
        return False
    inner = embedded_ipv4(ip) if isinstance(ip, IPv6Address) else []
    # Multicast is "global" to `ipaddress` but never a server to fetch from.
    return all(each.is_global and not each.is_multicast for each in (ip, *inner))


def is_loopback(host: str) -> bool:
    """Whether an address (or "localhost") is this machine's: 127.0.0.0/8, ::1, or IPv4-mapped ::ffff:127.x."""
    try:
        address = ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)  # how a dual-stack socket shows an IPv4 client
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
