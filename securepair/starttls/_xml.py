"""A strict, incremental reader for the XML of XMPP's plaintext phase.

XMPP's plaintext phase is a handful of elements: the stream header, the
stream features, ``<starttls/>``, ``<proceed/>`` or ``<failure/>`` and
stream errors.  This reader handles exactly the XML subset RFC 6120 11.1
allows, and refuses the rest:

* no comments, processing instructions (except the XML declaration at the
  very start), DTDs or CDATA sections -- ``<!`` and ``<?`` are errors;
* no entity references but the five predefined ones and character
  references;
* UTF-8 only; names and attribute syntax checked; duplicate attributes,
  undeclared prefixes and mismatched end tags are errors;
* depth at most :data:`MAX_DEPTH`; a tag at most ``max_line_length`` bytes;
  a top-level element at most ``max_buffer_size`` bytes.

It consumes the conversation's buffer token by token and stops right after
each complete child of the stream, so the byte after ``<proceed/>`` (or
after ``<starttls/>`` on the server) is exactly where it stopped: that is
the switch point.  Finding the end of a tag resumes where the last search
stopped (quotes included), so the work is linear in the input whatever the
chunking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._base import _Conversation
from .errors import LimitExceededError

__all__ = [
    "XElement",
    "StreamStart",
    "StreamEnd",
    "XMLStreamReader",
    "STREAMS_NS",
    "TLS_NS",
    "STANZA_ERRORS_NS",
    "escape",
    "MAX_DEPTH",
]

STREAMS_NS = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
STANZA_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
XML_NS = "http://www.w3.org/XML/1998/namespace"

#: Deepest element nesting accepted.  Stream features nest three or four
#: levels (features > mechanisms > mechanism); 16 leaves room for
#: extensions and stops stack-exhaustion games.
MAX_DEPTH = 16

_NAME = rb"[^\s/>=\"'<&?!]+"
_TAG = re.compile(
    rb"<(" + _NAME + rb")((?:\s+" + _NAME + rb"\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)\s*(/?)>",
    re.DOTALL,
)
_ATTR = re.compile(rb"\s+(" + _NAME + rb")\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')", re.DOTALL)
_END_TAG = re.compile(rb"</(" + _NAME + rb")\s*>")
_DECL = re.compile(
    rb"<\?xml\s+version\s*=\s*(['\"])1\.[0-9]+\1"
    rb"(?:\s+encoding\s*=\s*(['\"])(?:UTF-8|utf-8)\2)?"
    rb"(?:\s+standalone\s*=\s*(['\"])(?:yes|no)\3)?\s*\?>"
)
_REF = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_QUOTE_OR_END = re.compile(rb"[>\"']")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    """``text`` for an XML attribute or text node."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


@dataclass
class XElement:
    """An element: namespace, local name, attributes, children, text."""

    #: Namespace URI, or ``None``.
    ns: str | None
    #: Local name (no prefix).
    name: str
    #: Attributes by qualified name as written (``xml:lang``, ``to``...).
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[XElement] = field(default_factory=list)
    #: The text directly inside the element, concatenated.
    text: str = ""
    #: Top-level elements: the bytes as received.
    raw: bytes = b""
    #: Top-level elements: stream offset of the first byte.
    start: int = 0
    #: The qualified name as written (for the end tag).
    qname: str = ""
    #: Prefix -> namespace in scope inside this element.
    scope: dict[str, str | None] = field(default_factory=dict, repr=False)

    def find(self, ns: str | None, name: str) -> XElement | None:
        """The first child with that namespace and local name."""
        for child in self.children:
            if child.ns == ns and child.name == name:
                return child
        return None


@dataclass
class StreamStart:
    """The stream header ``<stream:stream ...>``."""

    element: XElement
    raw: bytes
    start: int


@dataclass
class StreamEnd:
    """``</stream:stream>``."""

    start: int


class _More:
    """A token was consumed; keep reading."""


_MORE = _More()


class XMLStreamReader:
    """Reads one XMPP stream from a conversation's buffer."""

    def __init__(self, conv: _Conversation) -> None:
        self._conv = conv
        self._stack: list[XElement] = []
        self._stream: XElement | None = None
        self._at_start = True
        self._tag_scan = 0  # bytes of the pending tag already scanned
        self._tag_quote = 0  # the quote the scan is inside, or 0
        self._raw = bytearray()  # raw bytes of the current top-level element
        self._top_start = 0
        self._ended = False

    @property
    def header(self) -> XElement | None:
        """The stream header, once read."""
        return self._stream

    def _fail(self, message: str, data: bytes = b"") -> None:
        self._conv._malformed(f"XML: {message}", data)

    def next(self) -> StreamStart | XElement | StreamEnd | None:
        """The next stream header, complete top-level child, or stream end;
        ``None`` when more input is needed."""
        conv = self._conv
        while True:
            if self._ended:
                return None
            buf = conv._buf
            pos = conv._pos
            if pos >= len(buf):
                return None
            if buf[pos] != 0x3C:  # text
                if self._text() is None:
                    return None
                continue
            token = self._markup()
            if token is None:
                return None
            if not isinstance(token, _More):
                return token

    # -- text

    def _text(self) -> bool | None:
        conv = self._conv
        buf = conv._buf
        pos = conv._pos
        end = buf.find(b"<", pos)
        inside = bool(self._stack)
        if end < 0:
            if inside:
                # Wait for the next tag, so that a reference is never cut
                # in two (the buffer limit bounds the wait).
                return None
            end = len(buf)
        data = conv._consume(end - pos)
        self._at_start = False
        if inside:
            self._raw += data
            self._check_size()
            self._stack[-1].text += self._decode_text(data)
        elif data.strip(b" \t\r\n"):
            self._fail("text outside any element", data)
        return True

    def _decode_text(self, data: bytes) -> str:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._fail("text is not UTF-8", data)
            raise AssertionError from None  # unreachable: _fail raises
        if _BAD_CHARS.search(text):
            self._fail("a character XML forbids", data)
        if ">" in text and "]]>" in text:
            self._fail("']]>' in text", data)
        return self._unescape(text, data)

    def _unescape(self, text: str, data: bytes) -> str:
        if "&" not in text:
            return text
        out = []
        pos = 0
        while True:
            amp = text.find("&", pos)
            if amp < 0:
                out.append(text[pos:])
                break
            out.append(text[pos:amp])
            match = _REF.match(text, amp)
            if match is None:
                self._fail("an entity reference other than the predefined ones", data)
                raise AssertionError  # unreachable
            if match.group(1):
                out.append(_PREDEFINED[match.group(1)])
            else:
                number = int(match.group(2)) if match.group(2) else int(match.group(3), 16)
                if number > 0x10FFFF or _BAD_CHARS.match(chr(number)) or 0xD800 <= number < 0xE000:
                    self._fail("a character reference to a forbidden character", data)
                out.append(chr(number))
            pos = match.end()
        return "".join(out)

    # -- markup

    def _markup(self) -> StreamStart | XElement | StreamEnd | _More | None:
        conv = self._conv
        buf = conv._buf
        pos = conv._pos
        if len(buf) - pos < 2:
            return None
        second = buf[pos + 1]
        if second == 0x3F:  # <?
            if not self._at_start:
                self._fail("a processing instruction", bytes(buf[pos : pos + 32]))
            end = buf.find(b"?>", pos)
            if end < 0:
                self._check_tag_size()
                return None
            decl = bytes(buf[pos : end + 2])
            if _DECL.fullmatch(decl) is None:
                self._fail("a bad XML declaration", decl)
            conv._consume(len(decl))
            self._at_start = False
            return _MORE
        if second == 0x21:  # <!
            self._fail("comments, DTDs and CDATA are not allowed", bytes(buf[pos : pos + 32]))
        end = self._find_tag_end()
        if end < 0:
            self._check_tag_size()
            return None
        self._tag_scan = 0
        self._tag_quote = 0
        tag = bytes(buf[pos:end])
        self._at_start = False
        if second == 0x2F:  # </
            return self._end_tag(tag)
        return self._start_tag(tag)

    def _find_tag_end(self) -> int:
        """Index just past the ``>`` that ends the tag at the buffer's
        consumed point, or -1 (the scan resumes there next time)."""
        conv = self._conv
        buf = conv._buf
        pos = conv._pos
        i = pos + max(self._tag_scan, 1)
        quote = self._tag_quote
        while True:
            if quote:
                j = buf.find(bytes((quote,)), i)
                if j < 0:
                    self._tag_scan = len(buf) - pos
                    self._tag_quote = quote
                    return -1
                i = j + 1
                quote = 0
                continue
            match = _QUOTE_OR_END.search(buf, i)
            if match is None:
                self._tag_scan = len(buf) - pos
                self._tag_quote = 0
                return -1
            char = buf[match.start()]
            i = match.end()
            if char == 0x3E:
                return i
            quote = char

    def _check_tag_size(self) -> None:
        conv = self._conv
        if conv._available() > conv.max_line_length:
            raise conv._fail(
                LimitExceededError(
                    f"an XML tag is longer than {conv.max_line_length} bytes",
                    protocol=conv.protocol,
                    limit=conv.max_line_length,
                    data=conv._pending(),
                )
            )

    def _check_size(self) -> None:
        conv = self._conv
        if len(self._raw) > conv.max_buffer_size:
            raise conv._fail(
                LimitExceededError(
                    f"an XML element is larger than {conv.max_buffer_size} bytes",
                    protocol=conv.protocol,
                    limit=conv.max_buffer_size,
                    data=bytes(self._raw[:64]),
                )
            )

    def _name(self, raw: bytes, tag: bytes) -> str:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._fail("a name is not UTF-8", tag)
            raise AssertionError from None
        if name.count(":") > 1 or name.startswith(":") or name.endswith(":"):
            self._fail(f"bad qualified name {name!r}", tag)
        return name

    def _start_tag(self, tag: bytes) -> StreamStart | XElement | _More:
        conv = self._conv
        match = _TAG.fullmatch(tag)
        if match is None:
            self._fail("a malformed start tag", tag)
            raise AssertionError
        if self._stream is not None and not self._stack and self._ended:
            self._fail("an element after the end of the stream", tag)
        if len(self._stack) >= MAX_DEPTH:
            self._fail(f"elements nested deeper than {MAX_DEPTH}", tag)
        qname = self._name(match.group(1), tag)
        attrs: dict[str, str] = {}
        for attr in _ATTR.finditer(match.group(2)):
            key = self._name(attr.group(1), tag)
            if key in attrs:
                self._fail(f"attribute {key!r} given twice", tag)
            value = attr.group(2) if attr.group(2) is not None else attr.group(3)
            attrs[key] = self._decode_text(value)
        parent_scope: dict[str, str | None]
        if self._stack:
            parent_scope = self._stack[-1].scope
        elif self._stream is not None:
            parent_scope = self._stream.scope
        else:
            parent_scope = {"xml": XML_NS}
        scope = dict(parent_scope)
        for key, value in attrs.items():
            if key == "xmlns":
                scope[""] = value or None
            elif key.startswith("xmlns:"):
                if not value:
                    self._fail("an empty namespace for a prefix", tag)
                scope[key[6:]] = value
        prefix, _, local = qname.rpartition(":")
        if prefix and prefix not in scope:
            self._fail(f"undeclared prefix {prefix!r}", tag)
        element = XElement(ns=scope.get(prefix), name=local, attrs=attrs, qname=qname, scope=scope)
        start = conv._consumed
        conv._consume(len(tag))
        if self._stream is None:
            if match.group(3):
                self._fail("the stream header closes itself", tag)
            self._stream = element
            return StreamStart(element=element, raw=tag, start=start)
        if not self._stack:
            self._raw = bytearray()
            self._top_start = start
        self._raw += tag
        self._check_size()
        if self._stack:
            self._stack[-1].children.append(element)
        if match.group(3):  # empty-element tag
            if not self._stack:
                return self._complete(element)
            return _MORE
        self._stack.append(element)
        return _MORE

    def _end_tag(self, tag: bytes) -> XElement | StreamEnd | _More:
        conv = self._conv
        match = _END_TAG.fullmatch(tag)
        if match is None:
            self._fail("a malformed end tag", tag)
            raise AssertionError
        qname = self._name(match.group(1), tag)
        start = conv._consumed
        if not self._stack:
            if self._stream is None or qname != self._stream.qname:
                self._fail("an end tag that closes nothing", tag)
            conv._consume(len(tag))
            self._ended = True
            return StreamEnd(start=start)
        element = self._stack.pop()
        if qname != element.qname:
            self._fail(f"end tag {qname!r} closes {element.qname!r}", tag)
        conv._consume(len(tag))
        self._raw += tag
        self._check_size()
        if not self._stack:
            return self._complete(element)
        return _MORE

    def _complete(self, element: XElement) -> XElement:
        element.raw = bytes(self._raw)
        element.start = self._top_start
        self._raw = bytearray()
        return element
