# -*- test-case-name: tests.http.test_body,tests.fuzz.test_http_request,tests.fuzz.test_http_response -*-
"""
HTTP/1.1 message bodies (RFC 9112 section 7): cutting a byte stream into
body pieces and whatever follows the body (the next pipelined message), as
the framing of L{netproxy.http.framing} says, and chunked encoding.

The proxy streams bodies both ways without holding them: the decoders hand
out slices of the data they are fed, never copy byte by byte, and buffer
nothing but one partial chunk-size or trailer line.

Pieces are always L{bytes}: Twisted transports refuse memoryviews, and a piece
that is the whole of a feed is handed out as it is, without a copy.
"""

import re

from netproxy.errors import HTTPError
from netproxy.http.framing import Framing

LAST_CHUNK = b"0\r\n\r\n"

# Bounds on what a chunked body can make us buffer or count.
MAX_SIZE_LINE = 4096
MAX_SIZE_DIGITS = 15
MAX_TRAILER_BYTES = 8192
MAX_TRAILER_FIELDS = 32
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# RFC 9112 section 7.1.1 allows BWS around ";" and "=" only, so "a " alone is
# not a size: some servers would read it as "a", others reject it.
_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*"
    % (_TOKEN, _TOKEN, _QUOTED)
)
# No whitespace before the colon and no obs-fold: both are framing hazards.
_FIELD_LINE = re.compile(rb"(%s):([\t\x20-\x7e\x80-\xff]*)" % _TOKEN)


class BodyDecoder:
    """
    What every decoder shares.  C{feed(data)} returns the body pieces found
    in C{data} (possibly none); C{done} says the body is complete; C{rest}
    holds the bytes that followed it, and grows if a done decoder is fed.
    A decoder that raised L{HTTPError} must not be fed again.

    :ivar error_status: the status of the L{HTTPError} raised for a bad or
        incomplete body, where one can be.
    """

    done = False
    error_status: int

    def __init__(self) -> None:
        self._rest: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        """
        Read the next bytes of the stream.

        :returns: the body pieces in C{data}; what is past the end is
            C{rest}.
        :raises HTTPError: C{error_status} when the framing is bad.
        """
        raise NotImplementedError

    @property
    def rest(self) -> bytes:
        """
        The bytes received after the end of the body; valid once C{done}.
        """
        if len(self._rest) > 1:
            self._rest = [b"".join(self._rest)]
        return self._rest[0] if self._rest else b""

    def _finish(self, data: bytes) -> list[bytes]:
        # data is what followed the body.
        self.done = True
        if data:
            self._rest.append(data)
        return []

    def connection_lost(self) -> None:
        """
        Note that the connection closed.

        :raises HTTPError: C{error_status} when the body is incomplete.
        """
        if not self.done:
            message = "connection closed before the body ended"
            raise HTTPError(self.error_status, message)


class NoBody(BodyDecoder):
    """
    The body of a message that has none: done from the start.
    """

    done = True
    feed = BodyDecoder._finish


class CloseDecoder(BodyDecoder):
    """
    A response body that ends when the connection closes.
    """

    def feed(self, data: bytes) -> list[bytes]:
        """Return C{data} as one piece: it is all body."""
        if self.done:
            return self._finish(data)
        return [data] if data else []

    def connection_lost(self) -> None:
        """
        The body is complete.
        """
        self.done = True


class LengthDecoder(BodyDecoder):
    """
    A body of a known length (Content-Length).

    :ivar remaining: how many body bytes are still to come.
    """

    def __init__(self, length: int, error_status: int = 400) -> None:
        super().__init__()
        self.remaining = length
        self.error_status = error_status
        self.done = length == 0

    def feed(self, data: bytes) -> list[bytes]:
        """Return the body pieces in C{data}; what is past the end is rest."""
        remaining = self.remaining
        if self.done:
            return self._finish(data)
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            return [data] if data else []
        self.remaining = 0
        self._finish(data[remaining:])
        return [data if len(data) == remaining else data[:remaining]]


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedDecoder(BodyDecoder):
    """
    A body in the chunked transfer coding (RFC 9112 section 7.1).

    Chunk extensions are checked against the grammar and ignored.  The chunk
    size is at most L{MAX_SIZE_DIGITS} hex digits, leading zeros included.

    :ivar trailers: the trailer fields, C{(name, value)} bytes as received;
        complete once C{done}.
    """

    def __init__(self, error_status: int = 400) -> None:
        super().__init__()
        self.error_status = error_status
        self.trailers: list[tuple[bytes, bytes]] = []
        self._state = _SIZE
        # Chunk data bytes left, or in _DATA_END how much of its CRLF is seen.
        self._remaining = 0
        self._line = bytearray()
        self._trailer_bytes = 0

    def _error(self, message: str) -> HTTPError:
        return HTTPError(self.error_status, message)

    def feed(self, data: bytes) -> list[bytes]:
        """
        Return the body pieces in C{data}; what is past the end is rest.

        :raises HTTPError: C{error_status} when the framing is bad.
        """
        if self.done:
            return self._finish(data)
        pieces = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                stop = pos + self._remaining
                if stop >= end:
                    pieces.append(data[pos:] if pos else data)
                    self._remaining = stop - end
                    pos = end
                    if not self._remaining:
                        self._state = _DATA_END
                    continue
                pieces.append(data[pos:stop])
                self._remaining = 0
                # The usual case: the CRLF is here, so skip a loop turn.
                if data.startswith(b"\r\n", stop):
                    self._state = _SIZE
                    pos = stop + 2
                else:
                    self._state = _DATA_END
                    pos = stop
            elif state == _DATA_END:
                # The CRLF may arrive split; _remaining counts what we saw.
                expected = b"\r\n"[self._remaining :]
                got = data[pos : pos + len(expected)]
                if not expected.startswith(got):
                    raise self._error("bad chunk terminator")
                pos += len(got)
                self._remaining += len(got)
                if self._remaining == 2:
                    self._state = _SIZE
                    self._remaining = 0
            else:
                pos = self._take_line(data, pos, end)
                if self.done:
                    self._finish(data[pos:])
                    break
        return pieces

    def _take_line(self, data: bytes, pos: int, end: int) -> int:
        """
        Buffer or process the size or trailer line starting at C{pos}.

        :returns: where the data after the line (or after C{data}) starts.
        """
        if self._state == _SIZE:
            room, too_long = MAX_SIZE_LINE, "chunk size line too long"
        else:
            room = MAX_TRAILER_BYTES - self._trailer_bytes
            too_long = "trailer section too long"
        room -= len(self._line)
        # Search no further than the limit, so junk is never scanned twice.
        nl = data.find(b"\n", pos, pos + room)
        if nl < 0:
            if end - pos >= room:
                raise self._error(too_long)
            self._line += data[pos:]
            return end
        if self._line:
            self._line += data[pos : nl + 1]
            line = bytes(self._line)
            self._line.clear()
        else:
            line = data[pos : nl + 1]
        # A bare LF ends a line for some parsers and not for others.
        if line[-2:-1] != b"\r":
            raise self._error("chunked line not ended by CRLF")
        if self._state == _SIZE:
            match = _SIZE_LINE.fullmatch(line, 0, len(line) - 2)
            if match is None:
                raise self._error("invalid chunk size")
            if match.end(1) > MAX_SIZE_DIGITS:
                raise self._error("chunk size too large")
            self._remaining = int(match.group(1), 16)
            self._state = _DATA if self._remaining else _TRAILER
        else:
            self._trailer_bytes += len(line)
            self._trailer_line(line[:-2])
        return nl + 1

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self.done = True
        elif len(self.trailers) >= MAX_TRAILER_FIELDS:
            raise self._error("too many trailer fields")
        else:
            match = _FIELD_LINE.fullmatch(line)
            if match is None:
                raise self._error("invalid trailer field")
            self.trailers.append((match.group(1), match.group(2).strip(b" \t")))


def make_decoder(framing: Framing, error_status: int = 400) -> BodyDecoder:
    """
    Build the decoder of a body.

    :param framing: a L{Framing} of any kind but C{"tunnel"}.
    :param error_status: the status of the L{HTTPError} raised for bad
        framing: 400 for a request body, 502 for a response body.
    :returns: a decoder for the body described by C{framing}.
    :raises ValueError: for a tunnel, whose bytes are not a body.
    """
    kind = framing.kind
    if kind == "length":
        # A "length" framing always has its length; narrowing it would cost
        # a check per request.
        return LengthDecoder(framing.length, error_status)  # type: ignore[arg-type]
    if kind == "chunked":
        return ChunkedDecoder(error_status)
    if kind == "none":
        return NoBody()
    if kind == "close":
        return CloseDecoder()
    raise ValueError(f"no body decoder for framing {kind!r}")


def encode_chunk(piece: bytes) -> list[bytes]:
    """
    Frame one body piece as a chunk.

    :param piece: a body piece, as the decoders hand them out.
    :returns: the chunk as a list for C{writeSequence}; empty for an empty
        piece, which would otherwise read as the last chunk.
    """
    if not piece:
        return []
    return [b"%x\r\n" % len(piece), piece, b"\r\n"]
