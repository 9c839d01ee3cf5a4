# -*- test-case-name: tests.http.test_head,tests.fuzz.test_http_request,tests.fuzz.test_http_response -*-
"""
HTTP/1.1 message heads: find where a head ends in a byte stream, and parse
request lines, status lines and header fields (RFC 9112 sections 2 to 6,
RFC 9110 section 5).

Every head the proxy handles goes through here, so the parsers work on whole
lines with C-level bytes methods (C{split}, C{find}, C{translate}) and never
loop over single bytes in Python.  They are strict where leniency would let a
client and an origin disagree about where a message ends (bare CR, obsolete
line folding, whitespace before a colon) and lenient only where the proxy
re-serialises what it read anyway (bare LF line endings, obs-text in values).

Message bodies are not this module's business: C{Content-Length} and
C{Transfer-Encoding} are returned like any other field, duplicates included,
for the framing code to judge.

Every bad request head raises L{HTTPError} with the status the proxy answers
(400, 431 or 505); every bad response head raises L{HTTPError} with status
502, the answer the client gets when its origin misbehaves.  Error texts never
quote the peer's bytes, because they end up in an HTML error page.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from netproxy.errors import HTTPError

MAX_HEAD = 64 * 1024
MAX_REQUEST_LINE = 8 * 1024
MAX_FIELDS = 100

# RFC 9110 section 5.6.2: tchar.  Used as the "delete" argument of
# bytes.translate: a token is valid when nothing is left of it.
_TCHAR = (
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# Everything but whitespace and control bytes may appear in a request-target;
# bytes >= 0x80 are not in the RFC's grammar but real clients send raw UTF-8.
_TARGET = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_OWS = b" \t"

_VERSIONS = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}
_VERSION_SYNTAX = re.compile(rb"HTTP/[0-9]\.[0-9]")

# The empty line ending a head is LF or CRLF right after a line's LF; a regex
# finds the earliest of both forms in one pass.
_END_OF_HEAD = re.compile(rb"\n\r?\n")
_EMPTY_LINES = re.compile(rb"(?:\r?\n)*")
_INCOMPLETE: tuple[None, bytes] = (None, b"")
_LINE_BREAKS = (b"\r", b"\n")


@dataclass(slots=True)
class RequestHead:
    """
    A parsed request line and its header fields.

    :ivar method: the method, case-sensitive, such as C{b"GET"}.
    :ivar target: the request-target exactly as sent (origin-, absolute-,
        authority- or asterisk-form).
    :ivar version: C{(1, 0)} or C{(1, 1)}.
    :ivar headers: C{(name, value)} pairs in the order received; names keep
        their case, values lose their leading and trailing whitespace.
    """

    method: bytes
    target: bytes
    version: tuple[int, int]
    headers: list[tuple[bytes, bytes]]


@dataclass(slots=True)
class ResponseHead:
    """
    A parsed status line and its header fields.

    :ivar version: C{(1, 0)} or C{(1, 1)}.
    :ivar status: the status code, 100 to 599.
    :ivar reason: the reason phrase, possibly empty.
    :ivar headers: as for L{RequestHead.headers}.
    """

    version: tuple[int, int]
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]


def _error(response: bool, status: int, reason: str) -> HTTPError:
    """
    :returns: the L{HTTPError} to raise for a bad request head (with
        C{status}) or a bad response head (always 502).
    """
    if response:
        return HTTPError(502, "upstream sent a malformed response head: " + reason)
    return HTTPError(status, reason)


def _split_lines(data: bytes, response: bool) -> list[bytes]:
    """
    Split a head into lines, accepting CRLF or bare LF line endings.

    :param data: a head, with or without its final empty line.
    :returns: the start line followed by the field lines.
    :raises HTTPError: on a bare CR or a NUL anywhere in C{data}.
    """
    # Pure CRLF is the common case: split on it directly, and fall back to
    # normalising only when the counts show a bare LF or a bare CR.
    crs = data.count(b"\r")
    if crs:
        lines = data.split(b"\r\n")
        if crs != len(lines) - 1 or data.count(b"\n") != crs:
            data = data.replace(b"\r\n", b"\n")
            if data.find(b"\r") >= 0:
                # A CR that does not end a line is read as a line break by
                # some implementations and not by others: a smuggling vector.
                raise _error(response, 400, "bare CR in message head")
            lines = data.split(b"\n")
    else:
        lines = data.split(b"\n")
    if data.find(b"\0") >= 0:
        raise _error(response, 400, "NUL in message head")
    # Drop the terminators of the last field line and of the empty line.
    # (Never the start line, even an empty one: that is the caller's error.)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
    return lines


def _field_error(lines: list[bytes], response: bool) -> HTTPError:
    """
    Explain why some line of a header section is not a valid field line.

    :param lines: the field lines, at least one of them invalid.
    :returns: the L{HTTPError} to raise.
    """
    for number, line in enumerate(lines):
        if line[:1] in (b" ", b"\t"):
            if number == 0:
                reason = "whitespace between the start line and the first header field"
            else:
                reason = "obsolete line folding in header section"
            return _error(response, 400, reason)
        colon = line.find(b":")
        if colon < 0:
            return _error(response, 400, "header line without colon")
        if colon == 0:
            return _error(response, 400, "empty header field name")
        name = line[:colon]
        if name[-1:] in (b" ", b"\t"):
            return _error(
                response, 400, "whitespace between header field name and colon"
            )
        if name.translate(None, _TCHAR):
            return _error(response, 400, "invalid character in header field name")
    raise AssertionError("no invalid field line")  # pragma: no cover


def _parse_fields(lines: list[bytes], response: bool, max_fields: int) -> list[tuple[bytes, bytes]]:
    """
    Parse field lines into C{(name, value)} pairs.

    :param lines: the head's lines after the start line (modified).
    :raises HTTPError: 431 (502 for a response) when there are more than
        C{max_fields} lines; 400 (502) on an invalid line.
    """
    if len(lines) > max_fields:
        raise _error(response, 431, f"more than {max_fields} header fields")
    # A line without a colon splits into one item and fails the unpacking.
    try:
        headers = [
            (name, value.strip(_OWS))
            for name, value in [line.split(b":", 1) for line in lines]
        ]
    except ValueError:
        raise _field_error(lines, response) from None
    names = [name for name, _ in headers]
    # One translate over all names checks them all; leading whitespace
    # (obs-fold) and whitespace before the colon both land in a name.
    if not all(names) or b"".join(names).translate(None, _TCHAR):
        raise _field_error(lines, response)
    return headers


def parse_request_head(data: bytes, max_fields: int = MAX_FIELDS) -> RequestHead:
    """
    Parse a request head.

    :param data: the head, from the request line (no leading empty lines) up
        to the end of the last field line or of the empty line after it, as
        L{HeadReader} hands it over.
    :param max_fields: the most header fields allowed.
    :returns: a L{RequestHead}.
    :raises HTTPError: 400 for a malformed head, 431 for a request line
        longer than C{MAX_REQUEST_LINE} or too many fields, 505 for a
        well-formed but unsupported HTTP version.
    """
    lines = _split_lines(data, False)
    line = lines[0]
    if len(line) > MAX_REQUEST_LINE:
        raise HTTPError(431, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if not method or method.translate(None, _TCHAR):
        raise HTTPError(400, "invalid method in request line")
    if not target or target.translate(None, _TARGET):
        raise HTTPError(400, "invalid request-target")
    parsed_version = _VERSIONS.get(version)
    if parsed_version is None:
        if _VERSION_SYNTAX.fullmatch(version):
            raise HTTPError(505, "HTTP version not supported", client_fault=True)
        raise HTTPError(400, "malformed HTTP version in request line")
    del lines[0]
    return RequestHead(
        method, target, parsed_version, _parse_fields(lines, False, max_fields)
    )


def parse_response_head(data: bytes, max_fields: int = MAX_FIELDS) -> ResponseHead:
    """
    Parse a response head.  Origins that send C{HTTP/1.1 200} with no space
    and no reason phrase are tolerated.

    :param data: the head, as for L{parse_request_head}.
    :param max_fields: the most header fields allowed.
    :returns: a L{ResponseHead}.
    :raises HTTPError: 502 for anything wrong with the head.
    """
    lines = _split_lines(data, True)
    line = lines[0]
    version = _VERSIONS.get(line[:8])
    code = line[9:12]
    if version is None or line[8:9] != b" " or len(code) != 3 or not code.isdigit():
        raise _error(True, 502, "malformed status line")
    status = int(code)
    if not 100 <= status <= 599:
        raise _error(True, 502, "status code out of range")
    if len(line) == 12:
        reason = b""
    elif line[12:13] == b" ":
        reason = line[13:]
    else:
        raise _error(True, 502, "malformed status line")
    del lines[0]
    return ResponseHead(version, status, reason, _parse_fields(lines, True, max_fields))


def header_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    :param headers: C{(name, value)} pairs, as in L{RequestHead.headers}.
    :param name: a field name in lower case.
    :returns: the values of every field called C{name}, whatever its case,
        in order.
    """
    size = len(name)
    return [v for n, v in headers if len(n) == size and n.lower() == name]


def check_request_start(data: bytes | bytearray, checked: int) -> int:
    """
    Whether the first bytes of a head can start a request line, which
    begins with a method, a token (RFC 9112 section 3): TLS or binary bytes
    sent to the plain port are refused at once, not left to time out.

    :param data: the head so far, from its first byte after any empty lines.
    :param checked: how many bytes of C{data} an earlier call found fit.
    :returns: -1 once the method is complete, else how many bytes are fit.
    :raises HTTPError: 400 when a byte of the method is not a token's, or
        the line ends before the method does.
    """
    space = data.find(b" ", checked)
    end = len(data) if space < 0 else space
    bad = data[checked:end].translate(None, _TCHAR)
    if bad[:1] in _LINE_BREAKS:
        raise HTTPError(400, "malformed request line")
    if bad or space == 0:
        raise HTTPError(400, "not an HTTP request: its first bytes cannot start a request line"
                             " (TLS or another protocol sent to a plain HTTP port?)")
    return end if space < 0 else -1


_Head = TypeVar("_Head", RequestHead, ResponseHead)


class HeadReader(Generic[_Head]):
    """
    Accumulates bytes until a complete head (start line, header fields and
    the empty line) has arrived, then parses it.

    Empty lines before the start line are skipped (RFC 9112 section 2.2) but
    count against the size limit.  Each byte is searched about once, however
    the stream is chunked.  After a complete head the reader is ready for the
    next one; after an error it must not be fed again.
    """

    __slots__ = (
        "_parse",
        "_max_size",
        "_too_large",
        "_buffer",
        "_searched",
        "_at_start",
        "_limit",
        "_check_start",
        "_start_checked",
    )

    def __init__(self, parse: Callable[[bytes], _Head], max_size: int = MAX_HEAD) -> None:
        """
        :param parse: L{parse_request_head} or L{parse_response_head} (or a
            partial of either), called with each complete head.
        :param max_size: the most bytes a head may take, empty line included.
        """
        self._parse: Callable[[bytes], _Head] = parse
        self._max_size = max_size
        # A response head too large is the origin's fault: the client gets 502.
        self._check_start: Callable[[bytes | bytearray, int], int] | None
        if getattr(parse, "func", parse) is parse_response_head:
            self._too_large = (
                502,
                f"upstream sent a response head larger than {max_size} bytes",
            )
            self._check_start = None
        else:
            self._too_large = (431, f"request head larger than {max_size} bytes")
            self._check_start = check_request_start
        self._reset()

    def _reset(self) -> None:
        self._buffer = bytearray()
        # Where the next search for the empty line starts.
        self._searched = 0
        self._at_start = True
        # Bytes the head may still take, after any skipped empty lines.
        self._limit = self._max_size
        # What check_request_start found fit so far (-1: all of the method).
        self._start_checked = 0

    def _fail(self) -> HTTPError:
        self._reset()
        return HTTPError(*self._too_large)

    def feed(self, data: bytes | bytearray) -> tuple[_Head, bytes] | tuple[None, bytes]:
        """
        :param data: the next bytes of the stream.
        :returns: C{(head, rest)} once the head is complete, C{rest} being
            every byte after the head's empty line (body or next message); or
            C{(None, b"")} while it is incomplete.
        :raises HTTPError: 431 (502 for responses) when more than
            C{max_size} bytes arrive without the end of the head; whatever
            C{parse} raises.
        """
        buffer = self._buffer
        if buffer:
            buffer += data
            data = buffer
        if self._at_start:
            if data.startswith(_LINE_BREAKS):
                # The pattern matches anywhere, if only the empty string.
                skip = _EMPTY_LINES.match(data).end()  # type: ignore[union-attr]
                self._limit -= skip
                if self._limit < 0:
                    raise self._fail()
                data = data[skip:]
            # A lone CR may be the first half of one more empty line.
            if not data or data == b"\r":
                self._buffer = bytearray(data)
                return _INCOMPLETE
            self._at_start = False
        match = _END_OF_HEAD.search(data, self._searched)
        if match is None:
            # Only a head still arriving needs its first bytes checked.
            if self._start_checked >= 0 and self._check_start is not None:
                self._start_checked = self._check_start(data, self._start_checked)
            if len(data) >= self._limit:
                raise self._fail()
            if data is not buffer:
                self._buffer = bytearray(data)
            # Resume where an empty line could begin with bytes seen so far.
            self._searched = max(len(data) - 2, 0)
            return _INCOMPLETE
        end = match.end()
        if end > self._limit:
            raise self._fail()
        head = bytes(data[:end])
        rest = bytes(data[end:])
        # The reset, without allocating when no bytes were buffered.
        buffer.clear()
        self._searched = 0
        self._at_start = True
        self._limit = self._max_size
        self._start_checked = 0
        return self._parse(head), rest
