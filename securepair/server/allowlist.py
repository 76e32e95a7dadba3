"""Which client addresses may connect to ``securepair serve``.

An :class:`Allowlist` is built from the entries of repeatable ``--allow``
flags (or the ``allow`` list of a TOML file).  Each entry is one of:

``192.168.1.7``, ``2001:db8::1``
    a single address;
``192.168.1.*``, ``10.*.*.*``, ``10.*.0.1``
    an IPv4 wildcard, ``*`` standing for a whole octet;
``10.0.0.0/8``, ``2001:db8::/32``
    a CIDR subnet, written with its network address;
``*``
    everyone.

``127.0.0.1`` and ``::1`` are always allowed, as the classic JSON-RPC
daemon's ``rpcallowip`` always allows localhost: the operator on the machine
itself is never locked out.  Only those two addresses, not all of
127.0.0.0/8, so that a test (or a container set-up) can use 127.0.0.2 as an
address from "outside".

A client address in IPv4-mapped form (``::ffff:192.168.1.7``, what a
dual-stack IPv6 socket reports for an IPv4 client) is matched against the
IPv4 entries as well as the IPv6 ones.

Matching is done on every accepted connection, so the entries are turned
into networks once, at construction: trailing wildcards are networks
(``192.168.*.*`` is 192.168.0.0/16), overlapping networks are merged, and
only a wildcard with a fixed octet after a ``*`` (``10.*.0.1``) needs the
per-octet matcher.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Allowlist"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Always allowed, whatever the entries say.
_LOCALHOST = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))

_FORMS = "an IP address, a wildcard such as 192.168.1.*, a CIDR subnet such as 10.0.0.0/8, or *"


def _octet(text: str) -> int | None:
    """The value of a decimal octet, or None: leading zeros are refused, as
    :mod:`ipaddress` refuses them, because some tools read them as octal."""
    if not (text.isascii() and text.isdigit()) or len(text) > 3:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    value = int(text)
    return value if value <= 255 else None


class Allowlist:
    """The client addresses that may connect.

    ``entries`` are strings as given to ``--allow``; a bad one raises
    :class:`ValueError` with a one-line message naming it and saying why.
    ``option`` is how the message names the source of the entries (for
    example ``"--trusted-proxy"`` or ``"allow in serve.toml"``).
    ``always_localhost=False`` drops the implicit 127.0.0.1 and ::1, for
    lists that grant more than a connection (the trusted load balancers
    whose PROXY headers are believed).

    >>> allowlist = Allowlist(["192.168.1.*", "10.0.0.0/8"])
    >>> allowlist.allows("192.168.1.7"), allowlist.allows("172.16.0.1")
    (True, False)
    >>> str(allowlist)
    'localhost, 192.168.1.*, 10.0.0.0/8'
    """

    def __init__(
        self, entries: Iterable[str] = (), *, option: str = "--allow", always_localhost: bool = True
    ) -> None:
        normalised: list[str] = []
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        patterns: list[tuple[int | None, ...]] = []
        everyone = False
        for entry in entries:
            # TOML lists can hold numbers; the type hint does not stop them.
            item: object = entry
            if not isinstance(item, str):
                raise ValueError(f"{option} {item!r}: not a string; write {_FORMS}")
            text = item.strip()
            if text == "*":
                everyone = True
                name = "*"
            elif "*" in text:
                pattern = self._parse_wildcard(text, option)
                name = ".".join("*" if o is None else str(o) for o in pattern)
                fixed = [o for o in pattern if o is not None]
                if pattern[: len(fixed)] == tuple(fixed):
                    # Trailing wildcards only: an ordinary network.
                    packed = bytes(fixed + [0] * (4 - len(fixed)))
                    v4.append(ipaddress.IPv4Network((packed, 8 * len(fixed))))
                else:
                    patterns.append(pattern)
            elif "/" in text:
                network = self._parse_network(text, option)
                name = str(network)
                if isinstance(network, ipaddress.IPv4Network):
                    v4.append(network)
                else:
                    v6.append(network)
            else:
                address = self._parse_address(text, option)
                name = str(address)
                if isinstance(address, ipaddress.IPv4Address):
                    v4.append(ipaddress.IPv4Network(address))
                else:
                    v6.append(ipaddress.IPv6Network(address))
            if name not in normalised:
                normalised.append(name)
        self._entries = tuple(normalised)
        self._localhost = always_localhost
        self._everyone = everyone
        self._v4 = tuple(ipaddress.collapse_addresses(v4))
        self._v6 = tuple(ipaddress.collapse_addresses(v6))
        self._patterns = tuple(dict.fromkeys(patterns))

    @staticmethod
    def _parse_wildcard(text: str, option: str) -> tuple[int | None, ...]:
        if ":" in text:
            raise ValueError(
                f"{option} {text!r}: wildcards are for IPv4 octets only; "
                "for IPv6 write a CIDR subnet such as 2001:db8::/32"
            )
        if "/" in text:
            raise ValueError(
                f"{option} {text!r}: write either a wildcard or a CIDR subnet, not both"
            )
        parts = text.split(".")
        for part in parts:
            if "*" in part and part != "*":
                raise ValueError(
                    f"{option} {text!r}: * must stand for a whole octet, "
                    f"as in 192.168.1.*; {part!r} is only part of one"
                )
        if len(parts) != 4:
            raise ValueError(
                f"{option} {text!r}: a wildcard has four octets, such as 192.168.1.* or 10.*.*.*"
            )
        pattern: list[int | None] = []
        for part in parts:
            if part == "*":
                pattern.append(None)
                continue
            value = _octet(part)
            if value is None:
                raise ValueError(f"{option} {text!r}: {part!r} is not an octet (0 to 255)")
            pattern.append(value)
        return tuple(pattern)

    @staticmethod
    def _parse_network(text: str, option: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"{option} {text!r}: not a CIDR subnet such as 10.0.0.0/8 or "
                    f"2001:db8::/32 ({exc})"
                ) from None
            raise ValueError(
                f"{option} {text!r}: has host bits set; the network address is "
                f"{network.network_address}, so write {network}"
            ) from None

    @staticmethod
    def _parse_address(text: str, option: str) -> _IPAddress:
        if "%" in text:
            plain = text.partition("%")[0]
            raise ValueError(
                f"{option} {text!r}: an entry cannot have a scope (%...); write {plain!r}, "
                "which matches the address on every interface"
            )
        if not text:
            raise ValueError(f"{option} {text!r}: empty; write {_FORMS}")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{option} {text!r}: not {_FORMS}") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # Matching maps client addresses to IPv4; the entry is kept alike.
            return address.ipv4_mapped
        return address

    @property
    def entries(self) -> tuple[str, ...]:
        """The entries, normalised (``2001:db8::1``, ``10.0.0.0/8``,
        ``192.168.1.*``, ``*``), duplicates dropped; localhost, always allowed,
        is not listed unless it was given."""
        return self._entries

    @property
    def allows_everyone(self) -> bool:
        """True when ``*`` is one of the entries."""
        return self._everyone

    def allows(self, address: str, *, localhost: bool = True) -> bool:
        """May a client at ``address`` connect?

        ``address`` is the host part of ``getpeername()``: IPv4, IPv6 with an
        optional scope (``fe80::1%eth0``, matched without it) or IPv4-mapped
        IPv6.  Anything that does not parse as an address is refused.
        ``localhost=False`` judges this address without the implicit
        127.0.0.1 and ::1 (an address reported by a remote load balancer,
        whose loopback is not this machine's).
        """
        if self._everyone:
            return True
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        localhost = localhost and self._localhost
        if isinstance(ip, ipaddress.IPv6Address):
            if (localhost and ip == _LOCALHOST[1]) or any(ip in net for net in self._v6):
                return True
            if ip.ipv4_mapped is None:
                return False
            ip = ip.ipv4_mapped
        if (localhost and ip == _LOCALHOST[0]) or any(ip in net for net in self._v4):
            return True
        if self._patterns:
            packed = ip.packed
            return any(
                all(want is None or want == got for want, got in zip(pattern, packed, strict=True))
                for pattern in self._patterns
            )
        return False

    def describe(self) -> str:
        """A short summary for a start-up log line:
        ``localhost, 192.168.1.*, 10.0.0.0/8``, ``everyone (*)``, or
        ``localhost only`` (``nobody`` without entries and localhost)."""
        if self._everyone:
            return "everyone (*)"
        if not self._localhost:
            return ", ".join(self._entries) or "nobody"
        rest = [entry for entry in self._entries if entry not in ("127.0.0.1", "::1")]
        if not rest:
            return "localhost only"
        return ", ".join(["localhost", *rest])

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        extra = "" if self._localhost else ", always_localhost=False"
        return f"Allowlist({list(self._entries)!r}{extra})"
