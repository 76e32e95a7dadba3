"""XMPP STARTTLS (RFC 6120 5), client-to-server and server-to-server streams.

The plaintext phase
===================
::

    C: <?xml version='1.0'?><stream:stream to='example.com' version='1.0'
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>
    S: <?xml version='1.0'?><stream:stream from='example.com' id='...'
         version='1.0' xmlns='jabber:client' xmlns:stream='...'>
    S: <stream:features>
         <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>
       </stream:features>
    C: <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>
    S: <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>     the go-ahead
    C: <ClientHello> ...
    C: <stream:stream ...>                                   inside TLS: a new
    S: <stream:stream ...><stream:features>...               stream, new features

``<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`` refuses (and the
server then closes the stream); a ``<stream:error>`` closes.  A server that
requires TLS answers anything but ``<starttls/>`` with a
``<policy-violation/>`` stream error.

Traps
=====
* **Injection after ``<proceed/>``.**  The TLS handshake starts on the byte
  after the ``>`` of ``<proceed/>``; XML the client buffered past it would
  be read as the first stanzas of the secure stream.  Any byte there is an
  :class:`~securepair.starttls.errors.InjectionError`.  On the server, what
  follows ``<starttls/>`` follows the
  :class:`~securepair.starttls.PipelinePolicy`.
* **Everything restarts.**  RFC 6120 5.4.3.3: after TLS both sides discard
  the old stream and the client opens a new one; the features (SASL
  mechanisms...) offered in plaintext are void.  :meth:`XMPPClient.followup`
  opens the new stream and reads the new features.
* **Restricted XML.**  No comments, processing instructions, DTDs or
  entities other than the predefined ones (RFC 6120 11.1): a strict reader
  refuses them (no billion laughs, no external entities).
* **Downgrade.**  A man in the middle can strip ``<starttls/>`` from the
  features or answer ``<failure/>``: both are refusals, an error unless the
  caller allowed plaintext.

Limits: a tag may be at most ``max_line_length`` bytes (default 8192), a
top-level element at most ``max_buffer_size``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import NoReturn

from ._base import (
    DEFAULT_MAX_BUFFER_SIZE,
    ClientNegotiator,
    Followup,
    PipelinePolicy,
    ServerNegotiator,
    State,
)
from ._xml import (
    STANZA_ERRORS_NS,
    STREAMS_NS,
    TLS_NS,
    StreamEnd,
    StreamStart,
    XElement,
    XMLStreamReader,
    escape,
)
from .errors import StartTLSUsageError
from .events import CommandReceived

__all__ = ["XMPPClient", "XMPPServer", "XMPPFollowup", "XMPPServerFollowup"]

STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
FAILURE = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
_NAMESPACES = ("jabber:client", "jabber:server")


def _check_domain(domain: str) -> str:
    if (
        not isinstance(domain, str)
        or not domain
        or not domain.isprintable()
        or any(c in domain for c in " <>&'\"/@")
    ):
        raise StartTLSUsageError(f"{domain!r} is not an XMPP domain", protocol="xmpp")
    return domain


def _check_namespace(namespace: str) -> str:
    if namespace not in _NAMESPACES:
        raise StartTLSUsageError(
            f"namespace must be one of {_NAMESPACES}, not {namespace!r}", protocol="xmpp"
        )
    return namespace


def _client_header(domain: str, namespace: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{escape(domain)}' version='1.0' "
        f"xmlns='{namespace}' xmlns:stream='{STREAMS_NS}'>"
    ).encode()


def _version_ok(element: XElement) -> bool:
    version = element.attrs.get("version", "")
    major, _, _ = version.partition(".")
    return major.isdigit() and int(major) >= 1


def _is_stream(element: XElement) -> bool:
    return element.ns == STREAMS_NS and element.name == "stream"


def _stream_error_condition(element: XElement) -> str:
    for child in element.children:
        if child.ns == STANZA_ERRORS_NS:
            return child.name
    return "undefined-condition"


def _features(element: XElement) -> tuple[str, ...]:
    """One string per feature: its local name, then the texts of its
    children (``"mechanisms PLAIN SCRAM-SHA-1"``)."""
    out = []
    for child in element.children:
        words = [child.name] + [c.text.strip() for c in child.children if c.text.strip()]
        out.append(" ".join(words))
    return tuple(out)


class XMPPClient(ClientNegotiator):
    """The client side of XMPP STARTTLS.

    Opens the stream to ``domain`` at once (``data_to_send()``), reads the
    server's header and features, sends ``<starttls/>`` if offered, and
    reports :class:`~securepair.starttls.events.ReadyToUpgrade` on
    ``<proceed/>``.  ``start_tls()`` verifies the certificate for
    ``domain`` unless given another ``server_hostname``.  :meth:`followup`
    opens the new stream inside TLS.
    """

    protocol = "xmpp"

    def __init__(
        self,
        domain: str,
        *,
        namespace: str = "jabber:client",
        allow_plaintext: bool = False,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            allow_plaintext=allow_plaintext,
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        #: The server's XMPP domain (``to`` of the stream header).
        self.domain = _check_domain(domain)
        #: ``jabber:client`` or ``jabber:server``.
        self.namespace = _check_namespace(namespace)
        self._xml = XMLStreamReader(self)
        self._step = "header"
        self._send_command(_client_header(self.domain, self.namespace))

    def _tls_hostname(self, server_hostname: str | None) -> str | None:
        return server_hostname or self.domain

    def _process(self) -> None:
        while self._state is State.NEGOTIATING:
            item = self._xml.next()
            if item is None:
                return
            if isinstance(item, StreamEnd):
                self._closed_by_peer("the server closed the stream")
            if isinstance(item, StreamStart):
                self._on_header(item)
                continue
            if item.ns == STREAMS_NS and item.name == "error":
                self._closed_by_peer(f"stream error: {_stream_error_condition(item)}", item.raw)
            if self._step == "features":
                self._on_features(item)
            else:
                self._on_proceed(item)

    def _on_header(self, item: StreamStart) -> None:
        self._check_reply_start(item.start, "stream header")
        element = item.element
        if not _is_stream(element):
            self._malformed("the server did not open a stream", item.raw)
        if element.scope.get("") != self.namespace:
            self._malformed(f"the server's stream is not in {self.namespace}", item.raw)
        if not _version_ok(element):
            self._refuse(
                "the server's stream has no version 1.0, so it has no STARTTLS",
                item.raw,
                not_offered=True,
            )
            return
        self._step = "features"

    def _on_features(self, item: XElement) -> None:
        if not (item.ns == STREAMS_NS and item.name == "features"):
            self._malformed("expected <stream:features>", item.raw)
        if item.find(TLS_NS, "starttls") is None:
            self._refuse(
                "the server does not offer <starttls/> in its stream features",
                b"",
                not_offered=True,
            )
            return
        self._send_command(STARTTLS)
        self._step = "proceed"

    def _on_proceed(self, item: XElement) -> None:
        self._check_reply_start(item.start, "answer to <starttls/>")
        if item.ns == TLS_NS and item.name == "proceed":
            if item.children or item.text.strip():
                self._malformed("<proceed/> has content", item.raw)
            self._upgrade()
        elif item.ns == TLS_NS and item.name == "failure":
            self._refuse("the server answered <starttls/> with <failure/>", item.raw)
        else:
            self._malformed(f"unexpected <{item.name}> instead of <proceed/>", item.raw)

    def _make_followup(self) -> XMPPFollowup:
        return XMPPFollowup(
            self.domain,
            namespace=self.namespace,
            max_line_length=self.max_line_length,
            max_buffer_size=self.max_buffer_size,
        )


class XMPPFollowup(Followup):
    """Client side, inside TLS: opens a new stream and reads the new stream
    features.  :attr:`stream_header` keeps the server's new header, so an
    XML parser that takes over can be fed ``stream_header +
    trailing_data``."""

    protocol = "xmpp"

    def __init__(
        self,
        domain: str,
        *,
        namespace: str = "jabber:client",
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self._namespace = _check_namespace(namespace)
        self._xml = XMLStreamReader(self)
        #: The server's stream header inside TLS, once read.
        self.stream_header = b""
        self._send(_client_header(_check_domain(domain), namespace))

    def _process(self) -> None:
        while not self.done:
            item = self._xml.next()
            if item is None:
                return
            if isinstance(item, StreamEnd):
                self._closed_by_peer("the server closed the stream")
            if isinstance(item, StreamStart):
                if not _is_stream(item.element):
                    self._malformed("the server did not open a stream", item.raw)
                self.stream_header = item.raw
                continue
            if item.ns == STREAMS_NS and item.name == "error":
                self._closed_by_peer(f"stream error: {_stream_error_condition(item)}", item.raw)
            if not (item.ns == STREAMS_NS and item.name == "features"):
                self._malformed("expected <stream:features>", item.raw)
            self._finish(_features(item))


class _ServerStream:
    """What the server side and its follow-up share: answering a header."""

    domain: str
    namespace: str
    stream_id: str

    def _header_reply(self, features: Iterable[str], *, tls: bool) -> bytes:
        header = (
            f"<?xml version='1.0'?><stream:stream from='{escape(self.domain)}' "
            f"id='{escape(self.stream_id)}' version='1.0' xml:lang='en' "
            f"xmlns='{self.namespace}' xmlns:stream='{STREAMS_NS}'>"
        )
        body = "" if tls else f"<starttls xmlns='{TLS_NS}'><required/></starttls>"
        return (header + "<stream:features>" + body + "".join(features)).encode(
            "utf-8"
        ) + b"</stream:features>"

    def _header_problem(self, element: XElement) -> str | None:
        """The stream error condition for a bad client header, or None."""
        if not _is_stream(element):
            return "invalid-namespace"
        if element.scope.get("") != self.namespace:
            return "invalid-namespace"
        if not _version_ok(element):
            return "unsupported-version"
        to = element.attrs.get("to")
        if to is not None and to.lower().rstrip(".") != self.domain.lower().rstrip("."):
            return "host-unknown"
        return None


def _stream_error(condition: str) -> bytes:
    return (
        f"<stream:error><{condition} xmlns='{STANZA_ERRORS_NS}'/></stream:error></stream:stream>"
    ).encode()


class XMPPServer(_ServerStream, ServerNegotiator):
    """The server side of XMPP STARTTLS.

    Waits for the client's stream header (checking namespace, version and
    ``to`` against ``domain``), answers with its own header and features:
    ``<starttls><required/></starttls>`` plus :attr:`capabilities`, each a
    raw XML feature element (for example a SASL ``<mechanisms>``).  Starts
    TLS on ``<starttls/>``.  With ``require_tls`` (the default), any other
    element gets a ``<policy-violation/>`` stream error.  Without it, other
    top-level elements are
    :class:`~securepair.starttls.events.CommandReceived` (``command`` the
    local name, ``argument`` the namespace, ``raw`` the element), answered
    with :meth:`reply_raw`.  After ``start_tls()``, :meth:`followup` answers
    the client's new stream with :attr:`tls_capabilities`.
    """

    protocol = "xmpp"
    OWN_COMMANDS = frozenset()
    DEFAULT_AUTO_ANSWER = frozenset()

    def __init__(
        self,
        domain: str,
        *,
        namespace: str = "jabber:client",
        capabilities: Iterable[str] = (),
        tls_capabilities: Iterable[str] | None = None,
        stream_id: str | None = None,
        require_tls: bool = True,
        policy: PipelinePolicy = PipelinePolicy.TLS_INPUT,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(
            capabilities=capabilities,
            tls_capabilities=tls_capabilities,
            require_tls=require_tls,
            policy=policy,
            auto_answer=(),
            max_line_length=max_line_length,
            max_buffer_size=max_buffer_size,
        )
        #: The XMPP domain this server serves.
        self.domain = _check_domain(domain)
        #: ``jabber:client`` or ``jabber:server``.
        self.namespace = _check_namespace(namespace)
        #: The stream id sent in the header (random unless given).
        self.stream_id = stream_id if stream_id is not None else secrets.token_hex(8)
        self._xml = XMLStreamReader(self)
        self._header_sent = False

    def _is_tls_cap(self, capability: str) -> bool:
        return TLS_NS in capability

    def _check_capability(self, capability: str) -> None:
        if not isinstance(capability, str) or not capability.startswith("<"):
            raise StartTLSUsageError(
                f"an XMPP feature is an XML element, not {capability!r}", protocol=self.protocol
            )

    def _malformed(self, message: str, data: bytes | bytearray | memoryview = b"") -> NoReturn:
        if self._state is State.NEGOTIATING:
            self._stream_error("not-well-formed")
        super()._malformed(message, data)

    def _framing_reply(self, what: str) -> None:
        self._stream_error("policy-violation")

    def _stream_error(self, condition: str) -> None:
        if not self._header_sent:
            self._send(self._header_reply((), tls=True).split(b"<stream:features>")[0])
            self._header_sent = True
        self._send(_stream_error(condition))

    def _process(self) -> None:
        while self._state is State.NEGOTIATING and self._waiting is None:
            item = self._xml.next()
            if item is None:
                return
            if isinstance(item, StreamStart):
                problem = self._header_problem(item.element)
                if problem is not None:
                    self._stream_error(problem)
                    self._close(b"", "refused")
                    return
                self._send(self._header_reply(self.capabilities, tls=False))
                self._header_sent = True
                continue
            if isinstance(item, StreamEnd):
                self._close(b"</stream:stream>")
                return
            if item.ns == TLS_NS and item.name == "starttls":
                self._switch(PROCEED)
            elif self.require_tls:
                self._stream_error("policy-violation")
                self._close(b"", "refused")
            else:
                event = CommandReceived(command=item.name, argument=item.ns or "", raw=item.raw)
                self._emit_command(event, item.start)

    def _answer(self, command: CommandReceived) -> None:
        self._send(_stream_error("unsupported-stanza-type"))
        self._close(b"", "refused")

    def _make_followup(self) -> XMPPServerFollowup:
        return XMPPServerFollowup(
            self, max_line_length=self.max_line_length, max_buffer_size=self.max_buffer_size
        )


class XMPPServerFollowup(_ServerStream, Followup):
    """Server side, inside TLS: reads the client's new stream header and
    answers with a new header and the TLS features (no ``<starttls/>``)."""

    protocol = "xmpp"

    def __init__(
        self,
        server: XMPPServer,
        *,
        max_line_length: int | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(max_line_length=max_line_length, max_buffer_size=max_buffer_size)
        self.domain = server.domain
        self.namespace = server.namespace
        self.stream_id = secrets.token_hex(8)
        self._features = list(server.tls_capabilities)
        self._xml = XMLStreamReader(self)

    def _process(self) -> None:
        if self.done:
            return
        item = self._xml.next()
        if item is None:
            return
        if not isinstance(item, StreamStart):
            self._malformed("expected the client's new stream header")
        problem = self._header_problem(item.element)
        if problem is not None:
            self._send(self._header_reply((), tls=True).split(b"<stream:features>")[0])
            self._send(_stream_error(problem))
            self._malformed(f"the client's new stream header is bad: {problem}", item.raw)
        self._send(self._header_reply(self._features, tls=True))
        self._finish(self._features)
