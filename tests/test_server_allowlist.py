"""``securepair.server.allowlist``: who may connect to ``securepair serve``."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securepair.server.allowlist import Allowlist


@pytest.mark.parametrize(
    ("entry", "inside", "outside"),
    [
        ("192.168.1.7", ["192.168.1.7", "::ffff:192.168.1.7"], ["192.168.1.8", "192.168.1.70"]),
        ("2001:db8::1", ["2001:db8::1", "2001:0db8:0:0::1", "2001:db8::1%lo"], ["2001:db8::2"]),
        ("192.168.1.*", ["192.168.1.0", "192.168.1.255"], ["192.168.2.1", "192.169.1.1"]),
        ("192.168.*.*", ["192.168.0.1", "192.168.255.3"], ["192.167.0.1"]),
        ("10.*.*.*", ["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"], ["11.0.0.1"]),
        ("10.*.0.1", ["10.0.0.1", "10.200.0.1"], ["10.0.0.2", "10.0.1.1", "11.0.0.1"]),
        ("*.168.1.1", ["1.168.1.1", "192.168.1.1"], ["192.168.1.2"]),
        ("10.0.0.0/8", ["10.0.0.1", "10.255.0.9", "::ffff:10.0.0.1"], ["11.0.0.1", "9.9.9.9"]),
        ("192.168.1.0/24", ["192.168.1.77"], ["192.168.0.77"]),
        ("2001:db8::/32", ["2001:db8::1", "2001:db8:ffff::1"], ["2001:db9::1", "10.0.0.1"]),
        ("0.0.0.0/0", ["1.2.3.4", "::ffff:8.8.8.8"], ["2001:db8::1"]),
        ("*.*.*.*", ["1.2.3.4", "255.255.255.255"], ["2001:db8::1"]),
    ],
)
def test_every_form_of_entry(entry: str, inside: list[str], outside: list[str]) -> None:
    allowlist = Allowlist([entry])
    for address in inside:
        assert allowlist.allows(address), address
    for address in outside:
        assert not allowlist.allows(address), address


def test_star_allows_everyone() -> None:
    allowlist = Allowlist(["*"])
    assert allowlist.allows_everyone
    for address in ["1.2.3.4", "2001:db8::1", "127.0.0.2", "::ffff:9.9.9.9", "fe80::1%eth0"]:
        assert allowlist.allows(address)
    assert str(allowlist) == "everyone (*)"
    assert not Allowlist(["*.*.*.*"]).allows_everyone


@pytest.mark.parametrize("entries", [[], ["10.0.0.0/8"], ["2001:db8::/32"], ["10.*.0.1"]])
def test_localhost_is_always_allowed(entries: list[str]) -> None:
    allowlist = Allowlist(entries)
    for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "::1%lo"]:
        assert allowlist.allows(address), address


@pytest.mark.parametrize(
    "address", ["127.0.0.2", "127.1.2.3", "::ffff:127.0.0.2", "::2", "0.0.0.0"]
)
def test_other_loopback_addresses_are_refused_by_default(address: str) -> None:
    assert not Allowlist().allows(address)


def test_loopback_subnet_can_be_allowed() -> None:
    assert Allowlist(["127.0.0.0/8"]).allows("127.0.0.2")


def test_localhost_can_be_left_out_for_trusted_proxies() -> None:
    trusted = Allowlist(["10.0.0.5"], option="--trusted-proxy", always_localhost=False)
    assert trusted.allows("10.0.0.5")
    for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1"]:
        assert not trusted.allows(address), address
    assert trusted.describe() == "10.0.0.5"
    assert repr(trusted) == "Allowlist(['10.0.0.5'], always_localhost=False)"
    assert Allowlist(always_localhost=False).describe() == "nobody"
    assert Allowlist(["127.0.0.1"], always_localhost=False).allows("127.0.0.1")
    with pytest.raises(ValueError, match=r"^--trusted-proxy 'x': not an IP address"):
        Allowlist(["x"], option="--trusted-proxy", always_localhost=False)


@pytest.mark.parametrize(
    "address", ["", "localhost", "not an address", "1.2.3", "10.0.0.1:443", "[::1]"]
)
def test_unparseable_addresses_are_refused(address: str) -> None:
    assert not Allowlist(["10.0.0.0/8", "10.*.0.1"]).allows(address)


def test_entries_are_normalised_and_deduplicated() -> None:
    allowlist = Allowlist(
        [
            " 192.168.1.* ",
            "2001:0DB8:0000::0001",
            "10.0.0.0/255.0.0.0",
            "10.0.0.0/8",
            "::ffff:192.0.2.1",
            "192.168.1.*",
        ]
    )
    assert allowlist.entries == ("192.168.1.*", "2001:db8::1", "10.0.0.0/8", "192.0.2.1")
    assert repr(allowlist) == (
        "Allowlist(['192.168.1.*', '2001:db8::1', '10.0.0.0/8', '192.0.2.1'])"
    )


def test_describe_for_the_start_up_line() -> None:
    allowlist = Allowlist(["192.168.1.*", "10.0.0.0/8"])
    assert allowlist.describe() == "localhost, 192.168.1.*, 10.0.0.0/8"
    assert str(allowlist) == allowlist.describe()
    assert Allowlist().describe() == "localhost only"
    assert Allowlist(["127.0.0.1", "::1"]).describe() == "localhost only"
    assert Allowlist(["::1", "2001:db8::/32"]).describe() == "localhost, 2001:db8::/32"


def test_accepts_any_iterable() -> None:
    allowlist = Allowlist(entry for entry in ("10.0.0.1", "10.0.0.2"))
    assert allowlist.entries == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (
            "192.168.1.300",
            "--allow '192.168.1.300': not an IP address, a wildcard such as 192.168.1.*, "
            "a CIDR subnet such as 10.0.0.0/8, or *",
        ),
        ("192.168.1.1*", "* must stand for a whole octet"),
        ("192.168.1*", "* must stand for a whole octet"),
        ("1*2.168.1.1", "'1*2' is only part of one"),
        ("10.0.0.1/8", "has host bits set; the network address is 10.0.0.0, so write 10.0.0.0/8"),
        ("2001:db8::1/32", "so write 2001:db8::/32"),
        ("10.0.0.0/33", "not a CIDR subnet"),
        ("10.0.0.0/x", "not a CIDR subnet"),
        ("192.168.*", "a wildcard has four octets"),
        ("192.168.1.*.*", "a wildcard has four octets"),
        ("192.168.256.*", "'256' is not an octet"),
        ("192.168.01.*", "'01' is not an octet"),
        ("2001:db8::*", "wildcards are for IPv4 octets only"),
        ("10.*/8", "not both"),
        ("fe80::1%eth0", "cannot have a scope"),
        ("", "empty"),
        ("   ", "empty"),
        ("example.com", "not an IP address"),
        ("192.168.1.07", "not an IP address"),
    ],
)
def test_bad_entries_say_what_is_wrong(entry: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"^--allow ") as raised:
        Allowlist(["10.0.0.0/8", entry])
    message = str(raised.value)
    assert words in message
    assert repr(entry) in message or repr(entry.strip()) in message
    assert "\n" not in message


def test_non_string_entries_from_toml() -> None:
    with pytest.raises(ValueError, match=r"^allow in serve.toml 8080: not a string"):
        Allowlist([8080], option="allow in serve.toml")  # type: ignore[list-item]


# -- properties ----------------------------------------------------------------

ipv4_ints = st.integers(min_value=0, max_value=2**32 - 1)
ipv6_ints = st.integers(min_value=0, max_value=2**128 - 1)


@given(network_int=ipv4_ints, prefix=st.integers(0, 32), offset=ipv4_ints)
def test_an_address_inside_an_ipv4_cidr_entry_is_allowed(
    network_int: int, prefix: int, offset: int
) -> None:
    network = ipaddress.IPv4Network((network_int, prefix), strict=False)
    address = network.network_address + offset % network.num_addresses
    allowlist = Allowlist([str(network)])
    assert allowlist.allows(str(address))
    assert allowlist.allows(f"::ffff:{address}")


@given(network_int=ipv6_ints, prefix=st.integers(0, 128), offset=ipv6_ints, other=ipv6_ints)
def test_an_address_inside_an_ipv6_cidr_entry_is_allowed(
    network_int: int, prefix: int, offset: int, other: int
) -> None:
    network = ipaddress.IPv6Network((network_int, prefix), strict=False)
    address = network.network_address + offset % network.num_addresses
    allowlist = Allowlist([str(network)])
    assert allowlist.allows(str(address))
    candidate = ipaddress.IPv6Address(other)
    if candidate not in network and candidate != ipaddress.IPv6Address("::1"):
        mapped = candidate.ipv4_mapped
        if mapped is None or mapped != ipaddress.IPv4Address("127.0.0.1"):
            assert not allowlist.allows(str(candidate))


@given(octets=st.lists(st.integers(0, 255), min_size=4, max_size=4), fixed=st.integers(0, 4))
def test_a_trailing_wildcard_equals_its_cidr(octets: list[int], fixed: int) -> None:
    wildcard = ".".join([str(o) for o in octets[:fixed]] + ["*"] * (4 - fixed))
    cidr = f"{'.'.join(str(o) for o in octets[:fixed] + [0] * (4 - fixed))}/{8 * fixed}"
    by_wildcard = Allowlist([wildcard])
    by_cidr = Allowlist([cidr])
    probes = [
        ".".join(str(o) for o in octets),
        ".".join(str(o) for o in octets[:fixed] + [255] * (4 - fixed)),
        ".".join(str((o + 1) % 256) for o in octets),
    ]
    for probe in probes:
        assert by_wildcard.allows(probe) == by_cidr.allows(probe), probe
    assert by_wildcard.allows(probes[0])


@given(
    pattern=st.lists(st.one_of(st.none(), st.integers(0, 255)), min_size=4, max_size=4),
    address=st.lists(st.integers(0, 255), min_size=4, max_size=4),
)
def test_any_wildcard_matches_octet_by_octet(pattern: list[int | None], address: list[int]) -> None:
    entry = ".".join("*" if o is None else str(o) for o in pattern)
    text = ".".join(str(o) for o in address)
    expected = all(want is None or want == got for want, got in zip(pattern, address, strict=True))
    if text == "127.0.0.1":
        expected = True
    assert Allowlist([entry]).allows(text) == expected
    # The address that certainly matches: the pattern with its holes filled.
    filled = ".".join(str(a if p is None else p) for p, a in zip(pattern, address, strict=True))
    assert Allowlist([entry]).allows(filled)


def test_localhost_can_be_left_out_for_one_check() -> None:
    allowlist = Allowlist(["10.0.0.0/8"])
    assert allowlist.allows("127.0.0.1") and allowlist.allows("::1")
    assert not allowlist.allows("127.0.0.1", localhost=False)
    assert not allowlist.allows("::ffff:127.0.0.1", localhost=False)
    assert not allowlist.allows("::1", localhost=False)
    assert allowlist.allows("10.1.2.3", localhost=False)
    # An entry that names loopback still counts.
    assert Allowlist(["127.0.0.1"]).allows("127.0.0.1", localhost=False)
