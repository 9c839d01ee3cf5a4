# -*- test-case-name: tests.test_resp -*-
"""
RESP2, the Redis serialization protocol, as pure functions and a decoder
that tests drive without a transport: commands out as arrays of bulk
strings, replies in as Python values.

The decoder is incremental (a reply may arrive a byte at a time) and
linear: an array being read is kept on a stack, so the bytes already
decoded are never read again.  Everything it buffers is bounded (a status
line, a bulk string, the elements and nesting of one reply); a reply past a
bound, or one that is not RESP2, raises L{RespError}, after which the
connection cannot be trusted and must be closed.
"""

import re
from collections.abc import Sequence

# A reply's value: a status (str), an error (RedisError), an integer, a bulk
# string (bytes) or null, or an array of them.
Reply = object

# The longest status, error or length line accepted, in bytes.
MAX_LINE = 64 * 1024
DEFAULT_MAX_BULK = 4 * 1024 * 1024
DEFAULT_MAX_ELEMENTS = 1024 * 1024
DEFAULT_MAX_DEPTH = 8

_INTEGER = re.compile(rb"-?[0-9]{1,19}\Z")


class RedisError(Exception):
    """
    An error reply from Redis (C{-ERR ...}, C{-NOSCRIPT ...}): the command
    failed, the connection is fine.

    :ivar kind: the error's first word (C{ERR}, C{NOSCRIPT}, C{WRONGTYPE}).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.kind = text.split(" ", 1)[0]


class RespError(Exception):
    """
    Bytes from the server that are not a RESP2 reply, or a reply past a
    bound: the connection must be closed.
    """


def encode_command(args: Sequence[bytes | str | int | float]) -> bytes:
    """
    :param args: the command's name and arguments; text is sent as UTF-8,
        numbers as their decimal text.
    :returns: the command as a RESP2 array of bulk strings.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            data = repr(arg).encode("ascii")
        else:
            raise TypeError(f"a Redis argument must be bytes, text or a number, not {type(arg).__name__}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespDecoder:
    """
    Turns the bytes of a Redis connection into replies.

    :param max_bulk: the longest bulk string accepted, in bytes.
    :param max_elements: the most array elements in one reply, at every
        depth together.
    :param max_depth: the deepest nesting of arrays in one reply.
    """

    def __init__(self, max_bulk: int = DEFAULT_MAX_BULK, max_elements: int = DEFAULT_MAX_ELEMENTS,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_depth = max_depth
        self._buffer = bytearray()
        # The arrays being filled, outermost first, each with the number of
        # elements it still lacks.
        self._stack: list[tuple[list[Reply], int]] = []
        self._elements = 0
        # The length of the bulk string whose bytes are awaited, or None.
        self._bulk: int | None = None
        # Where the search for the end of a line awaited resumes: a long
        # line that trickles in is scanned once, not from its start at
        # every read.
        self._scanned = 0

    def feed(self, data: bytes) -> list[Reply]:
        """
        :param data: bytes received, in order.
        :returns: the replies completed by them, in order.
        :raises RespError: on bytes that are not RESP2 or a reply too large.
        """
        buffer = self._buffer
        buffer += data
        position = 0
        replies: list[Reply] = []
        while True:
            if self._bulk is not None:
                end = position + self._bulk
                if len(buffer) < end + 2:
                    break
                if buffer[end:end + 2] != b"\r\n":
                    raise RespError("a bulk string is not followed by CRLF")
                value = bytes(buffer[position:end])
                position = end + 2
                self._bulk = None
                self._complete(value, replies)
                continue
            eol = buffer.find(b"\r\n", max(position, self._scanned), position + MAX_LINE + 2)
            if eol < 0:
                if len(buffer) - position > MAX_LINE:
                    raise RespError(f"a reply line is longer than {MAX_LINE} bytes")
                # The last byte may be the CR of a CRLF still to come.
                self._scanned = max(position, len(buffer) - 1)
                break
            self._scanned = 0
            kind, line = buffer[position:position + 1], bytes(buffer[position + 1:eol])
            position = eol + 2
            if kind == b"+":
                self._complete(line.decode("utf-8", "replace"), replies)
            elif kind == b"-":
                self._complete(RedisError(line.decode("utf-8", "replace")), replies)
            elif kind == b":":
                self._complete(_integer(line), replies)
            elif kind == b"$":
                length = _integer(line)
                if length == -1:
                    self._complete(None, replies)
                elif 0 <= length <= self.max_bulk:
                    self._bulk = length
                else:
                    raise RespError(f"a bulk string of {length} bytes (the most accepted is {self.max_bulk})")
            elif kind == b"*":
                self._array(_integer(line), replies)
            else:
                raise RespError(f"a reply starts with {bytes(kind)!r}, not one of + - : $ *")
        del buffer[:position]
        self._scanned = max(0, self._scanned - position)
        return replies

    def _array(self, count: int, replies: list[Reply]) -> None:
        if count == -1:
            self._complete(None, replies)
            return
        if count < 0:
            raise RespError(f"an array of {count} elements")
        self._elements += count
        if self._elements > self.max_elements:
            raise RespError(f"a reply of more than {self.max_elements} elements")
        if count == 0:
            self._complete([], replies)
            return
        if len(self._stack) >= self.max_depth:
            raise RespError(f"arrays nested more than {self.max_depth} deep")
        self._stack.append(([], count))

    def _complete(self, value: Reply, replies: list[Reply]) -> None:
        # Put a finished value in the array being filled; an array that
        # fills up is itself a finished value for the one around it.
        while self._stack:
            items, missing = self._stack[-1]
            items.append(value)
            if missing > 1:
                self._stack[-1] = (items, missing - 1)
                return
            self._stack.pop()
            value = items
        self._elements = 0
        replies.append(value)


def _integer(line: bytes) -> int:
    if not _INTEGER.match(line):
        raise RespError(f"{line[:40]!r} is not an integer")
    return int(line)


def reply_text(value: Reply) -> str:
    """
    :returns: a bulk string's UTF-8 text (undecodable bytes replaced), or
        the text of any other value.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def reply_number(value: Reply) -> int:
    """
    :returns: an integer reply, or the whole number a bulk string spells
        (C{ZSCORE}'s C{"12"}, C{"1.2e3"}).
    :raises ValueError: when it spells none.
    """
    if isinstance(value, int):
        return value
    return int(float(reply_text(value)))
