"""The hypothesis strategies users import: what they promise holds.

Valid records scan, valid ClientHellos parse (with both framers) to the
fields they were built from, broken ones are refused or waited on, chunkings
lose no byte, and tamper plans run on a TamperLink to a typed end.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securepair import PairState, SecurePair, TLSConfig
from securepair.errors import ClientHelloError, RecordError, SecurePairError
from securepair.records import NeedData, parse_client_hello, scan
from securepair.records import python as py_framer
from securepair.testing import Chunking, TamperLink
from securepair.testing import strategies as sps
from securepair.testing.tamper import Action, Tamper, TamperPlan

from .fixtures_engine import DEFAULT_HOSTNAME, Certs, examples


def slow(dev: int) -> settings:
    """``examples(dev)`` for tests whose inputs are slow to generate."""
    return settings(examples(dev), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@examples(200)
@given(stream=sps.record_streams())
def test_valid_record_streams_scan(stream: bytes) -> None:
    found = scan(stream)
    assert found.consumed == len(stream) and found.partial == 0


@examples(200)
@given(rec=sps.records(valid=False))
def test_any_records_scan_or_raise_typed(rec: bytes) -> None:
    # Documented: a bad header is a RecordError; nothing else may escape.
    with contextlib.suppress(RecordError):
        scan(rec)


@slow(300)
@given(hello=sps.client_hellos())
def test_valid_client_hellos_parse(hello: bytes) -> None:
    for parse in (parse_client_hello, py_framer.parse_client_hello):
        result = parse(hello)
        assert not isinstance(result, NeedData), result
        assert result.end == len(hello)


def test_build_client_hello_fields() -> None:
    hello = sps.build_client_hello(
        server_name="api.example.org", alpn=["h2", "http/1.1"], fragment_sizes=[10, 3]
    )
    parsed = parse_client_hello(hello)
    assert not isinstance(parsed, NeedData)
    assert parsed.server_name == "api.example.org"
    assert parsed.alpn_protocols == ("h2", "http/1.1")
    assert parsed.is_tls13
    assert scan(hello).records[0].length == 10


REFUSED = [f for f in sps.HELLO_FLAWS if f not in ("truncated", "message_too_long", "bit_flip")]


@slow(300)
@given(hello=sps.client_hellos(broken=True, flaws=REFUSED))
def test_broken_client_hellos_are_refused(hello: bytes) -> None:
    for parse in (parse_client_hello, py_framer.parse_client_hello):
        try:
            result = parse(hello)
        except (ClientHelloError, RecordError):
            continue
        raise AssertionError(f"accepted: {result!r}")


@slow(100)
@given(hello=sps.client_hellos(broken=True, flaws=["truncated", "message_too_long"]))
def test_incomplete_client_hellos_wait(hello: bytes) -> None:
    for parse in (parse_client_hello, py_framer.parse_client_hello):
        assert isinstance(parse(hello), NeedData)


@slow(300)
@given(hello=sps.client_hellos(broken=True))
def test_broken_client_hellos_same_in_both_framers(hello: bytes) -> None:
    outcomes: list[object] = []
    for parse in (parse_client_hello, py_framer.parse_client_hello):
        try:
            result = parse(hello)
        except (ClientHelloError, RecordError) as e:
            outcomes.append((type(e), str(e)))
            continue
        # A flipped bit can land where any value is fine (the random, a
        # suite); otherwise the parser must wait for bytes that never come.
        outcomes.append(("ok", result))
    assert outcomes[0] == outcomes[1]


@examples(200)
@given(data=st.binary(max_size=300), st_data=st.data())
def test_chunkings_lose_nothing(data: bytes, st_data: st.DataObject) -> None:
    chunking = st_data.draw(sps.chunkings())
    pieces = list(chunking(data))
    assert b"".join(pieces) == data
    assert all(pieces)
    assert b"".join(st_data.draw(sps.chunked(data))) == data


@examples(200)
@given(plan=sps.tamper_plans())
def test_tamper_plans(plan: TamperPlan) -> None:
    assert len(plan.tampers) <= 3
    for tamper in plan.tampers:
        assert isinstance(tamper, Tamper) and isinstance(tamper.action, Action)


@settings(examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=sps.tamper_plans(max_tampers=2), chunking=sps.chunkings(), data=st.binary(max_size=200))
def test_tamper_plans_on_real_pairs(
    pair_configs: tuple[TLSConfig, TLSConfig], plan: TamperPlan, chunking: Chunking, data: bytes
) -> None:
    """Whatever a drawn plan does, the pairs end connected or with typed
    errors, and the server reads a prefix of what the client wrote."""
    client_config, server_config = pair_configs
    server = SecurePair(server_config, server_side=True)
    client = SecurePair(client_config, server_side=False, server_hostname=DEFAULT_HOSTNAME)
    link = TamperLink(client, server, plan, chunking)
    link.settle()
    written = b""
    if data and client.state is PairState.OPEN:
        written = data[: client.cleartext.write(data)]
    for error in link.settle():
        assert error is None or isinstance(error, SecurePairError)
    assert written.startswith(server.cleartext.read())


@pytest.fixture(scope="module")
def pair_configs(certs: Certs) -> tuple[TLSConfig, TLSConfig]:
    return TLSConfig(ca=certs.ca_pem), TLSConfig(**certs.ecdsa.options())
