# -*- test-case-name: tests.message.test_codec,tests.fuzz.test_messages -*-
"""
Message framing: turn a connection's byte stream into JSON objects and back.

Every message role (relay, reverse, server, ack, client) speaks a stream of
UTF-8 JSON objects, optionally separated by whitespace.  Some peers send one
object with no newline and then wait for the answer without closing the
connection, so the end of a message is its closing brace, found by a small
scanner that keeps its state between chunks: each byte is looked at once, so
decoding is linear in the stream length however the stream is chunked.

The decoder holds at most C{max_size} bytes of an unfinished message and
reports every problem as a L{FramingError} whose text can be sent back to the
peer as it is.
"""

import json
import math
import re
from collections.abc import Iterator
from typing import Any, NoReturn

from netproxy.errors import FramingError

DEFAULT_MAX_SIZE = 64 * 1024

# JSON's whitespace is exactly these four bytes; anything else between
# messages must be the start of the next object.
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")
_WHITESPACE = b" \t\r\n"
# Outside strings only braces and quotes change the scanner's state, inside
# strings only the closing quote and backslash escapes do.  Every byte of a
# multi-byte UTF-8 character is >= 0x80, so scanning bytes never mistakes part
# of one for these ASCII characters.
_STRUCTURAL = re.compile(rb'[{}"]')
_STRING_SPECIAL = re.compile(rb'["\\]')

_OPEN_BRACE = ord("{")
_QUOTE = ord('"')


class _RejectedNumber(ValueError):
    """
    A number JSON cannot carry: NaN, an infinity or a float that overflows.
    """


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default, but they are not JSON
    # and our replies could not carry them back.
    raise _RejectedNumber(f"{name} is not allowed")


def _parse_float(text: str) -> float:
    value = float(text)
    # 1e999 parses to inf, which is Infinity by another name.
    if not math.isfinite(value):
        raise _RejectedNumber("number out of range")
    return value


def _describe_byte(value: int) -> str:
    if 0x20 < value < 0x7F:
        return repr(chr(value))
    return f"byte 0x{value:02x}"


def _decode_object(raw: bytes) -> dict[str, Any]:
    """
    Parse the bytes of one complete, brace-delimited message.

    :param raw: from the opening brace to its matching closing brace.
    :returns: the message.
    :raises FramingError: if C{raw} is not UTF-8 or not a valid JSON object.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FramingError("message is not valid UTF-8") from None
    try:
        message = json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_float
        )
    except json.JSONDecodeError as e:
        if e.lineno == 1:
            where = f"column {e.colno}"
        else:
            where = f"line {e.lineno} column {e.colno}"
        raise FramingError(f"malformed JSON: {e.msg} at {where}") from None
    except _RejectedNumber as e:
        raise FramingError(f"malformed JSON: {e}") from None
    except ValueError:
        # The only other ValueError json.loads raises is Python's cap on the
        # digits of an int; its own text is written for programmers.
        raise FramingError("malformed JSON: number too long") from None
    except RecursionError:
        raise FramingError("message nested too deeply") from None
    if not isinstance(message, dict):
        # Unreachable while the scanner is right: raw starts with "{" and
        # ends with its matching "}".  Kept so a scanner bug cannot hand a
        # non-object to the roles.
        raise FramingError("expected a JSON object")
    return message


class MessageDecoder:
    """
    Splits a byte stream into JSON objects.

    Feed it the data of one connection, chunk by chunk, in order; it yields
    each message as soon as its closing brace arrives.  After the first
    L{FramingError} the decoder is spent: the stream cannot be resynchronised,
    so the connection should be answered and closed.

    :ivar max_size: the largest message, in bytes, that is accepted.
    :ivar last_raw: the exact bytes of the message most recently yielded, for
        relaying a peer's message without rewriting it.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        """
        :param max_size: the largest message accepted, in bytes, counted from
            its opening brace to its closing brace.
        """
        self.max_size = max_size
        # Bytes of the current message received in earlier chunks.
        self._buffer = bytearray()
        # Scanner state, carried from one chunk to the next.  A depth of 0
        # means we are between messages.
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._failure: str | None = None
        self.last_raw = b""

    @property
    def buffered(self) -> int:
        """
        The number of bytes of an incomplete message currently held.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """
        Add the next chunk of the stream and yield the messages it completes.

        This is a generator: nothing is scanned until it is iterated, and it
        must be iterated to the end (a C{for} loop does) or the rest of the
        chunk is lost.

        :param data: the next bytes received.
        :returns: an iterator over the complete messages, in order.
        :raises FramingError: when the stream stops being a sequence of JSON
            objects within the size limit.  Messages before the fault are
            yielded first; every later call raises the same error again.
        """
        if self._failure is not None:
            raise FramingError(self._failure)
        if self._depth == 0:
            # Most chunks are one whole message (a peer writes a message and
            # waits for the answer): parsed at once, without the scanner.  A
            # chunk holding anything else fails to parse and is scanned.
            whole = data.strip(_WHITESPACE)
            if whole[:1] == b"{" and whole[-1:] == b"}" and len(whole) <= self.max_size:
                try:
                    message = _decode_object(whole)
                except FramingError:
                    pass
                else:
                    self.last_raw = whole
                    yield message
                    return
        pos = 0
        end = len(data)
        while pos < end:
            if self._depth == 0:
                match = _NOT_WHITESPACE.search(data, pos)
                if match is None:
                    return
                pos = match.start()
                if data[pos] != _OPEN_BRACE:
                    self._fail(
                        "expected a JSON object, got " + _describe_byte(data[pos])
                    )
                start = pos
                self._depth = 1
                pos += 1
            else:
                # The message began in an earlier chunk; its head is buffered.
                start = 0
            # Never look past the byte that would make the message too big,
            # so one huge chunk is refused without being scanned or kept.
            limit = start + self.max_size - len(self._buffer)
            pos = self._scan(data, pos, min(end, limit))
            if self._depth == 0:
                raw = data[start:pos]
                if self._buffer:
                    self._buffer += raw
                    raw = bytes(self._buffer)
                    self._buffer.clear()
                try:
                    message = _decode_object(raw)
                except FramingError as e:
                    self._fail(str(e))
                self.last_raw = raw
                yield message
            elif pos < end:
                self._fail(f"message larger than {self.max_size} bytes")
            else:
                self._buffer += data[start:]

    def _scan(self, data: bytes, pos: int, stop: int) -> int:
        """
        Advance the scanner over C{data[pos:stop]}.

        :returns: the index just past the closing brace of the current
            message if it was found, or C{stop} if it was not.
        """
        depth = self._depth
        in_string = self._in_string
        escaped = self._escaped
        while depth:
            if in_string:
                if escaped:
                    if pos >= stop:
                        break
                    # Whatever follows a backslash is part of the string.
                    escaped = False
                    pos += 1
                    continue
                match = _STRING_SPECIAL.search(data, pos, stop)
                if match is None:
                    pos = stop
                    break
                pos = match.end()
                if data[match.start()] == _QUOTE:
                    in_string = False
                else:
                    escaped = True
            else:
                match = _STRUCTURAL.search(data, pos, stop)
                if match is None:
                    pos = stop
                    break
                pos = match.end()
                byte = data[match.start()]
                if byte == _QUOTE:
                    in_string = True
                elif byte == _OPEN_BRACE:
                    depth += 1
                else:
                    depth -= 1
        self._depth = depth
        self._in_string = in_string
        self._escaped = escaped
        return pos

    def _fail(self, reason: str) -> NoReturn:
        """
        Spend the decoder: drop what it holds and remember why.

        :raises FramingError: always, with C{reason}.
        """
        self._failure = reason
        self._buffer = bytearray()
        self._depth = 0
        raise FramingError(reason)


def encode_message(message: dict[str, Any]) -> bytes:
    """
    Encode one message for the wire, as UTF-8 JSON followed by a newline.

    :param message: the message; its values must be JSON-serialisable.
    :returns: the bytes to write.
    :raises TypeError: if C{message} is not a C{dict} or holds a value JSON
        cannot represent.
    :raises ValueError: if it holds NaN or an infinity, which
        L{MessageDecoder} would refuse.
    """
    if not isinstance(message, dict):
        raise TypeError(f"a message must be a dict, not {type(message).__name__}")
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        ) + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (which a peer can send as "\ud800") has no UTF-8
        # form; escaped ASCII output carries it and is still valid JSON.
        return json.dumps(message, allow_nan=False).encode("ascii") + b"\n"


def wire_form(message: dict[str, Any], raw: bytes | None = None) -> bytes:
    """
    The bytes to pass a decoded message on with: C{raw}, the bytes it was
    decoded from (L{MessageDecoder.last_raw}), as they came, when they are
    on one line (a server may read a line at a time), else
    L{encode_message}.  Either way every field the peer sent goes on, and
    the bytes end with a newline.

    :param message: the message decoded from C{raw}.
    :param raw: its bytes from the opening to the closing brace, or
        L{None} when they are not at hand.
    """
    if raw is None or b"\n" in raw or b"\r" in raw:
        return encode_message(message)
    return raw + b"\n"
