"""LDAP StartTLS (RFC 4511 4.14, RFC 4513 3).

The plaintext phase
===================
StartTLS is an extended operation: one request, one response, both
BER-encoded LDAPMessages (RFC 4511 4.12)::

    C: LDAPMessage { messageID 1,
         extendedReq { requestName "1.3.6.1.4.1.1466.20037" } }
    S: LDAPMessage { messageID 1,
         extendedResp { resultCode success(0), matchedDN "",
                        diagnosticMessage "",
                        responseName "1.3.6.1.4.1.1466.20037" } }
    C: <ClientHello> ...

A non-zero result code refuses: ``protocolError`` (2, StartTLS not
supported), ``operationsError`` (1, other operations outstanding, or TLS
already active), ``unavailable`` (52), ``confidentialityRequired`` (13)...
An unsolicited Notice of Disconnection (messageID 0, responseName
``1.3.6.1.4.1.1466.20036``) means the server is closing.  The server
advertises StartTLS in its root DSE's ``supportedExtension``.

Traps
=====
* **Response injection.**  The client must not receive anything between
  the success response and its ClientHello; any byte is an
  :class:`~securepair.starttls.errors.InjectionError`.
* **Request injection (server).**  Requests pipelined behind StartTLS are
  never processed (RFC 4511 4.14.1 forbids outstanding operations anyway);
  they follow the :class:`~securepair.starttls.PipelinePolicy`.
* **Stale state.**  After TLS, whatever the root DSE said in plaintext may
  have been forged; read it again over TLS if it matters.
* **BER.**  A lenient BER parser is an attack surface of its own; the codec
  here (:mod:`securepair.starttls._ber`) decodes only the few types the
  exchange needs, strictly, with bounded lengths.

Limits: one LDAPMessage may be at most ``max_buffer_size`` bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from . import _ber as ber
from ._base import (
    DEFAULT_MAX_BUFFER_SIZE,
    ClientNegotiator,
    PipelinePolicy,
    ServerNegotiator,
    State,
    _Conversation,
)
from .errors import LimitExceededError, StartTLSError, StartTLSUsageError
from .events import CommandReceived

__all__ = [
    "LDAPClient",
    "LDAPServer",
    "STARTTLS_OID",
    "NOTICE_OF_DISCONNECTION_OID",
    "RESULT_CODES",
    "starttls_request",
]

#: The StartTLS extended operation (RFC 4511 4.14.1).
STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
#: The Notice of Disconnection (RFC 4511 4.4.1).
NOTICE_OF_DISCONNECTION_OID = b"1.3.6.1.4.1.1466.20036"

#: Result codes by number (RFC 4511 A.2), for messages.
RESULT_CODES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    32: "noSuchObject",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}

# protocolOp tags (RFC 4511 4.2-4.12) and the response each one gets.
_OPS = {
    0x60: "bindRequest",
    0x42: "unbindRequest",
    0x63: "searchRequest",
    0x66: "modifyRequest",
    0x68: "addRequest",
    0x4A: "delRequest",
    0x6C: "modDNRequest",
    0x6E: "compareRequest",
    0x50: "abandonRequest",
    0x77: "extendedRequest",
}
_RESPONSE_TAG = {
    0x60: 0x61,  # bindResponse
    0x63: 0x65,  # searchResDone
    0x66: 0x67,
    0x68: 0x69,
    0x4A: 0x6B,
    0x6C: 0x6D,
    0x6E: 0x6F,
    0x77: 0x78,  # extendedResp
}
_EXTENDED_RESPONSE = 0x78
_SEARCH_ENTRY = 0x64
_SEARCH_DONE = 0x65


def starttls_request(message_id: int = 1) -> bytes:
    """The StartTLS ExtendedRequest as BER bytes."""
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(ber.octets(STARTTLS_OID, 0x80), tag=0x77),
    )


def _result(
    message_id: int,
    tag: int,
    code: int,
    diagnostic: bytes = b"",
    *,
    matched_dn: bytes = b"",
    extra: bytes = b"",
) -> bytes:
    return ber.sequence(
        ber.integer(message_id),
        ber.sequence(
            ber.enumerated(code), ber.octets(matched_dn), ber.octets(diagnostic), extra, tag=tag
        ),
    )


def _notice_of_disconnection(code: int, diagnostic: bytes) -> bytes:
    return _result(
        0, _EXTENDED_RESPONSE, code, diagnostic, extra=ber.octets(NOTICE_OF_DISCONNECTION_OID, 0x8A)
    )


@dataclass(frozen=True, slots=True)
class _Message:
    message_id: int
    op: int
    body: ber.Reader
    critical_controls: bool
    raw: bytes
    start: int


class _Messages(_Conversation):
    """Reads whole LDAPMessages from the buffer."""

    # LDAP has no lines; the line limit only has to fit in the buffer.
    default_max_line_length = 64

    def _read_message(self) -> _Message | None:
        data = self._buf
        pos = self._pos
        try:
            header = ber.header_length(data, pos, len(data))
        except ber.BERError as exc:
            self._ber_error(str(exc), bytes(data[pos : pos + 64]))
        if header is None:
            return None
        tag, _, stop = header
        if tag != 0x30:
            self._ber_error(
                f"an LDAPMessage is a SEQUENCE, not tag 0x{tag:02x}", bytes(data[pos : pos + 64])
            )
        if stop - pos > self.max_buffer_size:
            raise self._fail(
                LimitExceededError(
                    f"an LDAPMessage of {stop - pos} bytes is over max_buffer_size",
                    protocol=self.protocol,
                    limit=self.max_buffer_size,
                    data=bytes(data[pos : pos + 64]),
                )
            )
        if stop > len(data):
            return None
        start = self._consumed
        raw = self._consume(stop - pos)
        try:
            outer = ber.Reader(raw)
            message = outer.sub(0x30)
            outer.done()
            message_id = message.integer()
            op = message.peek_tag()
            if op is None:
                raise ber.BERError("an LDAPMessage without a protocolOp")
            _, _, op_start, op_stop = message.read()
            body = ber.Reader(raw, op_start, op_stop)
            critical = False
            if not message.at_end():
                controls = message.sub(0xA0)
                while not controls.at_end():
                    control = controls.sub(0x30)
                    control.octets()
                    if control.peek_tag() == 0x01 and control.boolean():
                        critical = True
                    if not control.at_end():
                        control.octets()
                    control.done()
            message.done()
        except ber.BERError as exc:
            self._ber_error(str(exc), raw)
        return _Message(message_id, op, body, critical, raw, start)

    def _ber_error(self, message: str, data: bytes) -> NoReturn:
        self._malformed(f"bad BER: {message}", data)


class LDAPClient(_Messages, ClientNegotiator):
    """The client side of LDAP StartTLS: sends the ExtendedRequest at once
    (``data_to_send()``) with ``message_id``, reports
    :class:`~securepair.starttls.events.ReadyToUpgrade` on success.  A
    non-zero result code is a refusal; its name and the diagnostic message
    are in the error.  Use message IDs above ``message_id`` afterwards."""

    protocol = "ldap"

    def __init__(
        self,
        *,
        message_id: int = 1,
        allow_plaintext: bool = False,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(allow_plaintext=allow_plaintext, max_buffer_size=max_buffer_size)
        if not isinstance(message_id, int) or not 1 <= message_id < 2**31:
            raise StartTLSUsageError("message_id must be in 1..2**31-1", protocol="ldap")
        self.message_id = message_id
        self._send_command(starttls_request(message_id))

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            message = self._read_message()
            if message is None:
                return
            if message.op != _EXTENDED_RESPONSE:
                self._malformed(
                    f"unexpected {_OPS.get(message.op, hex(message.op))} from the server",
                    message.raw,
                )
            try:
                body = message.body
                code = body.integer(0x0A, maximum=2**31 - 1)
                body.octets()
                diagnostic = body.octets()
                if body.peek_tag() == 0xA3:
                    body.read(0xA3)
                name = body.octets(0x8A) if body.peek_tag() == 0x8A else None
                if body.peek_tag() == 0x8B:
                    body.octets(0x8B)
                body.done()
            except ber.BERError as exc:
                self._ber_error(str(exc), message.raw)
            text = diagnostic.decode("utf-8", "replace")
            if message.message_id == 0 and name == NOTICE_OF_DISCONNECTION_OID:
                self._closed_by_peer(f"notice of disconnection: {text}", message.raw)
            if message.message_id != self.message_id:
                self._malformed(f"a response to unknown message {message.message_id}", message.raw)
            self._check_reply_start(message.start)
            if name is not None and name != STARTTLS_OID:
                self._malformed("the response names another extended operation", message.raw)
            if code == 0:
                self._upgrade()
            else:
                self._refuse(
                    f"the server refused StartTLS: {RESULT_CODES.get(code, str(code))} "
                    f"({code}) {text}".rstrip(),
                    message.raw,
                    not_offered=code == 2,
                )


class LDAPServer(_Messages, ServerNegotiator):
    """The server side of LDAP StartTLS.

    Answers the StartTLS ExtendedRequest (refusing one with a requestValue
    or a critical control), and a root DSE search (base ``""``, scope base)
    with ``supportedExtension`` (StartTLS plus :attr:`capabilities`, each an
    OID) and ``supportedLDAPVersion: 3``.  With ``require_tls``, every other
    operation gets its response with ``confidentialityRequired`` (13).
    Unbind ends the conversation; abandon is ignored.  Others are
    :class:`~securepair.starttls.events.CommandReceived` (``command`` the
    operation, ``tag`` the message ID, ``raw`` the whole message); answer
    with :meth:`reply`.  Malformed BER gets a Notice of Disconnection.
    """

    protocol = "ldap"
    OWN_COMMANDS = frozenset({"ROOTDSE"})
    DEFAULT_AUTO_ANSWER = OWN_COMMANDS

    def __init__(
        self,
        *,
        capabilities: Iterable[str] = (),
        tls_capabilities: Iterable[str] | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        auto_answer: Iterable[str] | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            capabilities=capabilities,
            tls_capabilities=tls_capabilities,
            require_tls=require_tls,
            policy=policy,
            auto_answer=auto_answer,
            max_buffer_size=max_buffer_size,
        )
        self._waiting_op = 0

    def _is_tls_cap(self, capability: str) -> bool:
        return capability == STARTTLS_OID.decode()

    def _check_capability(self, capability: str) -> None:
        if not isinstance(capability, str) or not all(
            part.isdigit() for part in capability.split(".")
        ):
            raise StartTLSUsageError(
                f"an LDAP capability is an extension OID, not {capability!r}",
                protocol=self.protocol,
            )

    def reply(self, result_code: int, diagnostic: str = "", matched_dn: str = "") -> None:
        """Answer the waiting operation with its response (bindResponse,
        searchResDone, extendedResp...) carrying ``result_code``."""
        waiting = self.waiting
        if waiting is None:
            raise StartTLSUsageError("no command is waiting for a reply", protocol=self.protocol)
        if not isinstance(result_code, int) or not 0 <= result_code < 2**31:
            raise StartTLSUsageError(f"bad result code {result_code!r}", protocol=self.protocol)
        assert waiting.tag is not None
        self.reply_raw(
            _result(
                int(waiting.tag),
                _RESPONSE_TAG[self._waiting_op],
                result_code,
                diagnostic.encode(),
                matched_dn=matched_dn.encode(),
            )
        )

    def _ber_error(self, message: str, data: bytes) -> NoReturn:
        self._send(_notice_of_disconnection(2, b"malformed LDAPMessage"))
        self._malformed(f"bad BER: {message}", data)

    def _process(self) -> None:
        while self._state is State.NEGOTIATING and self._waiting is None:
            message = self._read_message()
            if message is None:
                return
            self._on_message(message)

    def _on_message(self, message: _Message) -> None:
        op = message.op
        name = _OPS.get(op)
        if name is None:
            self._ber_error(f"unknown protocolOp 0x{op:02x}", message.raw)
        mid = message.message_id
        if op == 0x42:  # unbind: no response, the end
            self._close(b"", "quit")
            return
        if op == 0x50:  # abandon: no response
            return
        response_tag = _RESPONSE_TAG[op]
        if op == 0x77:
            try:
                oid = message.body.octets(0x80)
                has_value = message.body.peek_tag() == 0x81
                if has_value:
                    message.body.octets(0x81)
                message.body.done()
            except ber.BERError as exc:
                self._ber_error(str(exc), message.raw)
            if oid == STARTTLS_OID:
                if message.critical_controls:
                    self._send(_result(mid, response_tag, 12, b"unsupported critical control"))
                elif has_value:
                    self._send(_result(mid, response_tag, 2, b"StartTLS takes no requestValue"))
                else:
                    self._switch(
                        _result(mid, response_tag, 0, extra=ber.octets(STARTTLS_OID, 0x8A))
                    )
                return
        command = name
        if op == 0x63 and self._is_root_dse(message):
            command = "rootDSE"
        elif self.require_tls:
            self._send(
                _result(mid, response_tag, 13, b"confidentiality required: use StartTLS first")
            )
            return
        event = CommandReceived(command=command, argument="", raw=message.raw, tag=str(mid))
        self._waiting_op = op
        if command == "rootDSE":
            self._handle_command(event, message.start)
        else:
            self._emit_command(event, message.start)

    def _is_root_dse(self, message: _Message) -> bool:
        body = ber.Reader(message.body.data, message.body.pos, message.body.end)
        try:
            base = body.octets()
            scope = body.integer(0x0A, maximum=3)
        except ber.BERError as exc:
            self._ber_error(str(exc), message.raw)
        return base == b"" and scope == 0

    def _root_dse(self, message_id: int, capabilities: Iterable[str], *, tls: bool) -> bytes:
        extensions = [] if tls else [STARTTLS_OID]
        extensions += [c.encode() for c in capabilities]
        attributes = ber.sequence(
            ber.sequence(
                ber.octets(b"supportedExtension"),
                ber.sequence(*(ber.octets(e) for e in extensions), tag=0x31),
            ),
            ber.sequence(
                ber.octets(b"supportedLDAPVersion"), ber.sequence(ber.octets(b"3"), tag=0x31)
            ),
        )
        entry = ber.sequence(
            ber.integer(message_id),
            ber.sequence(ber.octets(b""), attributes, tag=_SEARCH_ENTRY),
        )
        return entry + _result(message_id, _SEARCH_DONE, 0)

    def _answer(self, command: CommandReceived) -> None:
        assert command.tag is not None
        mid = int(command.tag)
        if command.command == "rootDSE":
            self._send(self._root_dse(mid, self.capabilities, tls=False))
        elif command.command == "extendedRequest":
            self._send(_result(mid, _EXTENDED_RESPONSE, 2, b"unsupported extended operation"))
        else:
            self._send(_result(mid, _RESPONSE_TAG[self._waiting_op], 53, b"not supported here"))

    def answer_in_tls(self, line: bytes) -> bytes | None:
        """Inside TLS, offer each complete LDAPMessage here: a second
        StartTLS gets ``operationsError`` (RFC 4511 4.14.2), a root DSE
        search lists :attr:`tls_capabilities` without StartTLS; ``None``
        for everything else (and for bytes that are not one message)."""
        probe = _Probe(line)
        message = probe.message()
        if message is None:
            return None
        if message.op == 0x77:
            try:
                oid = message.body.octets(0x80)
            except ber.BERError:
                return None
            if oid == STARTTLS_OID:
                return _result(message.message_id, _EXTENDED_RESPONSE, 1, b"TLS is already active")
            return None
        if message.op == 0x63:
            body = ber.Reader(message.body.data, message.body.pos, message.body.end)
            try:
                if body.octets() == b"" and body.integer(0x0A, maximum=3) == 0:
                    return self._root_dse(message.message_id, self.tls_capabilities, tls=True)
            except ber.BERError:
                return None
        return None


class _Probe(_Messages):
    """Parses one message for :meth:`LDAPServer.answer_in_tls`."""

    protocol = "ldap"

    def __init__(self, data: bytes) -> None:
        super().__init__(max_line_length=64, max_buffer_size=max(len(data), 64))
        self._buf += data

    def message(self) -> _Message | None:
        try:
            message = self._read_message()
        except StartTLSError:  # not one well-formed message: not ours to answer
            return None
        if message is None or self._available():
            return None
        return message

    def _process(self) -> None:  # pragma: no cover - never fed
        pass
