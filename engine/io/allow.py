"""Which senders may steer the show: an allow-list of networks for OSC and ZeroMQ control."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


def parse_network(text: str) -> IpNetwork:
    """'192.168.1.0/24', '10.0.0.7' (one host) or '::1/128' -> a network; ValueError says why not."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP network or address ({exc})") from None


class SenderAllowList:
    """`host in allow`: True when the sender's address lies in one of the networks.

    IPv4 senders seen through an IPv6 socket (``::ffff:10.0.0.7``) are matched as IPv4. An empty list
    allows nobody; `["0.0.0.0/0", "::/0"]` allows everyone (say so in the venue's config).
    """

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[IpNetwork, ...] = tuple(parse_network(n) for n in networks)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)

    @property
    def everyone(self) -> bool:
        return any(net.prefixlen == 0 for net in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks) or "nobody"


_LOCAL_PREFIXES = ("127.", "localhost", "::1", "[::1]", "ipc://", "inproc://", "tcp://127.", "tcp://localhost")


def exposure(where: str) -> str:
    """ " (reachable from the network)" when a bound address (host, host:port or a ZeroMQ endpoint) is not
    loopback-only, else ""; for the startup lines and `check`."""
    return (
        "" if where.startswith(_LOCAL_PREFIXES) or where.startswith("tcp://[::1]") else " (reachable from the network)"
    )
