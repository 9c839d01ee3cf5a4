# -*- test-case-name: tests.http.test_framing,tests.fuzz.test_http_response -*-
"""
How an HTTP/1.1 message's body is delimited (RFC 9112 section 6).

Strict where a lenient guess would let two implementations disagree about
where a message ends (request smuggling): a request framed two ways, or
with a doubtful Content-Length, is refused rather than guessed at.  The
decoders that cut the body out of the byte stream are in
L{netproxy.http.body}.
"""

from typing import NamedTuple

from netproxy.errors import HTTPError

# 18 decimal digits stay below 2**63, what any peer's length type can hold.
MAX_LENGTH_DIGITS = 18


class Framing(NamedTuple):
    """
    How a message's body is delimited.

    :ivar kind: C{"none"}, C{"length"}, C{"chunked"}, C{"close"} (read until
        the connection closes) or C{"tunnel"} (the connection stops being
        HTTP after the header section).
    :ivar length: the body length for C{"length"}, else L{None}.
    :ivar must_close: the connection cannot carry another message after this
        one, because the body ends with it or its framing was suspect.
    """

    kind: str
    length: int | None = None
    must_close: bool = False


_NONE = Framing("none")
_CHUNKED = Framing("chunked")
_CLOSE = Framing("close", None, True)
_TUNNEL = Framing("tunnel", None, True)


def _collect(headers: list[tuple[bytes, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """Return the Transfer-Encoding and the Content-Length field values."""
    te, cl = [], []
    for name, value in headers:
        name = name.lower()
        if name == b"transfer-encoding":
            te.append(value)
        elif name == b"content-length":
            cl.append(value)
    return te, cl


def _codings(values: list[bytes]) -> list[bytes]:
    """Return the lower-cased transfer codings listed across C{values}."""
    codings = (c.strip(b" \t").lower() for c in b",".join(values).split(b","))
    # RFC 9110 section 5.6.1: a recipient ignores empty list elements.
    return [c for c in codings if c]


def _length(value: bytes) -> int | None:
    """Return C{value} as a length, or L{None} if it is not a valid one."""
    value = value.strip(b" \t")
    if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
        return None
    return int(value)


def request_framing(version: tuple[int, int], headers: list[tuple[bytes, bytes]]) -> Framing:
    """
    Decide how a request's body is delimited (RFC 9112 section 6.3).

    Anything ambiguous is refused rather than guessed, because the origin
    might guess differently and read a smuggled request from the body.

    :param version: C{(major, minor)}, as L{netproxy.http.head} parses it.
    :param headers: the header fields as received, C{(name, value)} bytes.
    :returns: a L{Framing} of kind C{"none"}, C{"length"} or C{"chunked"}.
    :raises HTTPError: 400 when the framing is invalid or ambiguous; 501
        for a transfer coding other than chunked (section 6.1).
    """
    te, cl = _collect(headers)
    if te and cl:
        raise HTTPError(400, "both Transfer-Encoding and Content-Length")
    if te:
        if version < (1, 1):
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = _codings(te)
        if codings[-1:] != [b"chunked"] or codings.count(b"chunked") > 1:
            # Section 6.3: without chunked last (and once), where the body
            # ends cannot be known.
            raise HTTPError(400, "the request's Transfer-Encoding does not end with chunked, once")
        if len(codings) > 1:
            # Section 6.1: a transfer coding the proxy does not understand
            # (it decodes chunked only, and cannot pass others on).
            raise HTTPError(501, "transfer codings other than chunked are not supported", client_fault=True)
        return _CHUNKED
    if not cl:
        return _NONE
    if len(cl) > 1 or b"," in cl[0]:
        raise HTTPError(400, "duplicate Content-Length")
    length = _length(cl[0])
    if length is None:
        raise HTTPError(400, "invalid Content-Length")
    return Framing("length", length)


def response_framing(
    request_method: bytes, status: int, version: tuple[int, int], headers: list[tuple[bytes, bytes]]
) -> Framing:
    """
    Decide how a response's body is delimited (RFC 9112 section 6.3).

    :param request_method: the method of the request answered, such as
        C{b"GET"}.
    :param status: the response's status code.
    :param version: C{(major, minor)}, as L{netproxy.http.head} parses it.
    :param headers: the header fields as received, C{(name, value)} bytes.
    :returns: a L{Framing}.
    :raises HTTPError: 502 when the framing is invalid, or uses a transfer
        coding other than chunked.
    """
    # RFC 9110 section 9.3.6: any 2xx, 204 included, turns CONNECT's
    # connection into a tunnel, so this comes before the no-body statuses.
    if request_method == b"CONNECT" and 200 <= status < 300:
        return _TUNNEL
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        return _NONE
    te, cl = _collect(headers)
    if te:
        if version < (1, 1):
            # Section 6.1: treat the framing as faulty, even with a length.
            raise HTTPError(502, "Transfer-Encoding in an HTTP/1.0 response")
        if _codings(te) != [b"chunked"]:
            # Section 6.1: the proxy decodes chunked only.  Another coding
            # (gzip, chunked) cannot be passed on, since Transfer-Encoding
            # is hop-by-hop, and dropping it would hand the client encoded
            # bytes with nothing to say so; chunked not last would leave
            # the body to end with the connection.  Squid answers 502 too.
            raise HTTPError(502, "the upstream server used a transfer coding other than chunked")
        # Transfer-Encoding overrides Content-Length (section 6.3 item 3);
        # both at once smells of response splitting, so do not reuse the
        # connection afterwards.
        return Framing("chunked", None, bool(cl))
    if not cl:
        return _CLOSE
    # RFC 9110 section 8.6 lets a recipient accept repeated equal values.
    lengths = {_length(v) for value in cl for v in value.split(b",")}
    if None in lengths:
        raise HTTPError(502, "invalid Content-Length in the response")
    if len(lengths) > 1:
        raise HTTPError(502, "conflicting Content-Length values in the response")
    return Framing("length", lengths.pop())
