"""IP addresses as bindings compare them: one host has one form.

An IPv4 client reached over a dual-stack socket shows up as `::ffff:a.b.c.d`, and a link-local
IPv6 address may carry a zone (`fe80::1%eth0`): neither changes which host it is.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmapped(address: IPAddress) -> IPAddress:
    """The address in its one comparable form: IPv4 for IPv4-mapped IPv6, no zone id."""
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


_MAPPED_PREFIX = 0xFFFF << 32  # ::ffff:0:0/96


def within(address: IPAddress, networks: IPNetwork | tuple[IPNetwork, ...]) -> bool:
    """Whether the host `address` is in a network, in either of its forms: an IPv4 host is also
    `::ffff:a.b.c.d`, so an IPv6 network that spells out mapped addresses covers it."""
    nets = networks if isinstance(networks, tuple) else (networks,)
    host = unmapped(address)
    if any(host in network for network in nets):
        return True
    if host.version == 4:
        mapped = ipaddress.IPv6Address(_MAPPED_PREFIX | int(host))
        return any(mapped in network for network in nets)
    return False
