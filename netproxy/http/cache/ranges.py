# -*- test-case-name: tests.http.cache.test_ranges -*-
"""
Range requests answered from a stored complete response (RFC 9110 section
14, RFC 9111 section 3.4), as pure functions: which bytes a C{Range} field
asks for, whether an C{If-Range} still holds, and the fields of a 206 or
416 response.

One range only: a field asking for several is ignored and the full
response sent (RFC 9110 section 14.2 lets a server ignore C{Range}),
which spares a C{multipart/byteranges} body and the abuse of many small or
overlapping ranges.  Anything malformed is ignored the same way, as the
RFC asks.
"""

import re

from netproxy.http.cache.fields import first_date, parse_http_date
from netproxy.http.head import header_values

#: What L{requested_range} answers when no byte of the response is asked
#: for: the response is a 416.
UNSATISFIABLE = "unsatisfiable"

# bytes=FIRST-[LAST] or bytes=-SUFFIX; a field longer than this is no
# single range anyone sends, and is ignored unread.
_MAX_FIELD = 200
_SPEC = re.compile(rb"[ \t]*bytes[ \t]*=[ \t]*([0-9]{0,40})[ \t]*-[ \t]*([0-9]{0,40})[ \t]*", re.IGNORECASE)


def _spec(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, int | None] | None:
    """
    :returns: the (first, last) numbers of the one byte range the request
        asks for, L{None} for a suffix's missing first or an open range's
        missing last; L{None} when there is no single well-formed range.
    """
    values = header_values(headers, b"range")
    if len(values) != 1 or len(values[0]) > _MAX_FIELD:
        return None
    match = _SPEC.fullmatch(values[0])
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    first = int(first_text) if first_text else None
    last = int(last_text) if last_text else None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def requested_range(headers: list[tuple[bytes, bytes]], length: int) -> tuple[int, int] | str | None:
    """
    The bytes of a response of C{length} bytes a request's C{Range} asks
    for (RFC 9110 section 14.1.2).

    :param headers: the request's header fields.
    :returns: C{(first, last)}, inclusive offsets within the body;
        L{UNSATISFIABLE} when the range starts past the end (or asks for a
        suffix of no bytes, or any byte of an empty body); L{None} when the
        request has no C{Range}, several ranges, another unit, or one that
        is malformed (C{bytes=5-1}, C{bytes=-}, C{bytes=a-b}): then the
        full response answers.
    """
    spec = _spec(headers)
    if spec is None:
        return None
    first, last = spec
    if first is None:
        assert last is not None
        if last == 0 or length == 0:
            return UNSATISFIABLE
        return max(0, length - last), length - 1
    if first >= length:
        return UNSATISFIABLE
    return first, length - 1 if last is None else min(last, length - 1)


def range_offset(headers: list[tuple[bytes, bytes]]) -> int | None:
    """
    How far into the body a request's one range starts, known before the
    body's length is: its first byte.

    :returns: that offset; L{None} without a single well-formed range, or
        for a suffix range (whose start depends on the length).
    """
    spec = _spec(headers)
    return None if spec is None else spec[0]


def if_range_holds(request_headers: list[tuple[bytes, bytes]], stored_headers: list[tuple[bytes, bytes]]) -> bool:
    """
    Whether a request's C{If-Range} lets its range be served from a stored
    response (RFC 9110 section 13.1.5): only on a strong match.

    :returns: L{True} without C{If-Range}; with an entity tag, when it is
        strong and the stored C{ETag} is the same strong tag; with a date,
        when it is the stored C{Last-Modified} exactly and that is a strong
        validator (at least a second before the stored C{Date}).  L{False}
        otherwise: the full response is then sent.
    """
    values = header_values(request_headers, b"if-range")
    if not values:
        return True
    if len(values) != 1:
        return False
    value = values[0].strip(b" \t")
    if value[:1] == b'"' or value[:2] == b"W/":
        tags = header_values(stored_headers, b"etag")
        return (value[:1] == b'"' and len(value) > 1 and value[-1:] == b'"' and len(tags) == 1
                and tags[0].strip(b" \t") == value)
    when = parse_http_date(value)
    modified = first_date(stored_headers, b"last-modified")
    date = first_date(stored_headers, b"date")
    return when is not None and when == modified and date is not None and date - when >= 1


def content_range(first: int, last: int, length: int) -> bytes:
    """
    :returns: the C{Content-Range} value of a 206 holding bytes C{first}
        to C{last} of C{length}.
    """
    return b"bytes %d-%d/%d" % (first, last, length)


def unsatisfied_range(length: int) -> bytes:
    """
    :returns: the C{Content-Range} value of a 416 for a body of C{length}
        bytes.
    """
    return b"bytes */%d" % (length,)


def fetch_whole(headers: list[tuple[bytes, bytes]], limit: int | None) -> bool:
    """
    Whether a range request that misses is sent upstream without its range,
    so that the whole response can be stored (and the range cut from it):
    the meaning of Squid's C{range_offset_limit}.

    :param headers: the request's header fields.
    :param limit: how far into the body a range may start and still have
        the whole response fetched; L{None} for no limit; C{0} never.
    :returns: L{True} for one well-formed range starting within C{limit}
        (a suffix range only without a limit, since where it starts is not
        known); L{False} otherwise: the request goes upstream untouched.
    """
    if limit == 0:
        return False
    spec = _spec(headers)
    if spec is None:
        return False
    first = spec[0]
    if first is None:
        return limit is None
    return limit is None or first <= limit


class RangeCutter:
    """
    Cuts one range out of a body as it streams past: what a range request
    that was fetched whole receives.

    :param first: the first offset sent.
    :param last: the last offset sent (inclusive).
    :ivar passed: the bytes of the body seen so far.
    """

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.passed = 0

    def cut(self, piece: bytes) -> bytes:
        """
        :param piece: the next bytes of the body.
        :returns: those of them within the range (perhaps none).
        """
        start = self.passed
        self.passed = end = start + len(piece)
        low, high = max(self.first, start) - start, min(self.last + 1, end) - start
        return piece[low:high] if low < high else b""

    @property
    def complete(self) -> bool:
        """
        Whether every byte of the range has passed.
        """
        return self.passed > self.last
