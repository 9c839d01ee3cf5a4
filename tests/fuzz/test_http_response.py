"""
Fuzz tests of the HTTP proxy's origin side: the proxy's connection to an
origin receives valid responses (interim ones, every framing, cacheable or
not) mutated byte by byte, cut into random pieces, with or without the
origin closing after them.

Whatever the origin sends, the client's bytes must read as HTTP responses
with the proxy's own strict parsers: the origin's response when it was
valid (same status, same body), a 502 page when its head was not, or a
response cut short by closing the connection when its body went wrong;
never a traceback in the log, and past every timeout no connection open.
"""

from hypothesis import event, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.body import CloseDecoder, make_decoder
from netproxy.http.framing import _codings, response_framing
from netproxy.http.head import HeadReader, header_values, parse_response_head
from tests.fuzz import fuzz
from tests.fuzz.mutation import HEAD_TOKENS, chunked_bodies, mutated, pieces
from tests.fuzz.proxy_run import Run

REQUESTS = {
    b"GET": b"GET http://192.0.2.10/r HTTP/1.1\r\n\r\n",
    b"HEAD": b"HEAD http://192.0.2.10/r HTTP/1.1\r\n\r\n",
    b"POST": b"POST http://192.0.2.10/r HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
}
OLD_GET = b"GET http://192.0.2.10/r HTTP/1.0\r\n\r\n"
NEXT = b"GET http://192.0.2.10/next HTTP/1.1\r\n\r\n"
RESPONSE_FIELDS = (
    b"Cache-Control: max-age=60", b"Cache-Control: no-store", b"Cache-Control: private", b'ETag: "v1"',
    b"Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT", b"Expires: 0", b"Vary: Accept", b"Vary: *",
    b"Set-Cookie: a=b", b"Connection: close", b"Connection: keep-alive", b"Keep-Alive: timeout=1",
    b"Age: 5", b"Date: Thu, 01 Jan 1970 00:00:00 GMT", b"Content-Range: bytes 0-1/2", b"X-Empty:",
    b"Trailer: X-Sum", b"Via: 1.1 elsewhere",
)


@st.composite
def responses(draw):
    """
    A valid response, maybe after interim ones: a status, fields, and a
    body framed by length, by chunks, or by the end of the connection.
    """
    out = []
    for status in draw(st.lists(st.sampled_from((100, 102, 103)), max_size=2)):
        out.append(b"HTTP/1.1 %d Interim\r\n\r\n" % status)
    version = draw(st.sampled_from((b"1.1", b"1.1", b"1.0")))
    status = draw(st.sampled_from((200, 200, 201, 204, 206, 301, 304, 404, 500, 503)))
    reason = draw(st.sampled_from((b" OK", b" ", b"")))
    fields = draw(st.lists(st.sampled_from(RESPONSE_FIELDS), max_size=4))
    framing = draw(st.sampled_from(("length", "length", "chunked", "close")))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=60))
        fields.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked" and version == b"1.1":
        body = draw(chunked_bodies())
        fields.append(b"Transfer-Encoding: chunked")
    else:
        body = draw(st.binary(max_size=60))
    out.append(b"HTTP/%s %d%s\r\n" % (version, status, reason) + b"".join(f + b"\r\n" for f in fields) + b"\r\n")
    return b"".join(out) + body


def expected(method, data, closed):
    """
    What the origin's bytes mean, read with the proxy's own parsers.

    :returns: C{("ok", status, body)} for a complete final response;
        C{("bad head", None, None)} when its head (or framing) is refused;
        C{("bad body", status, None)} when its body is; C{("incomplete",
        status or None, None)} when it has not ended; C{("other", None,
        None)} for transfer codings other than chunked, whose treatment is
        the proxy's choice.
    """
    reader = HeadReader(parse_response_head)
    try:
        while True:
            head, data = reader.feed(data)
            if head is None:
                return "incomplete", None, None
            if head.status >= 200:
                break
        if _codings(header_values(head.headers, b"transfer-encoding")) not in ([], [b"chunked"]):
            return "other", None, None
        decoder = make_decoder(response_framing(method, head.status, head.version, head.headers), 502)
    except HTTPError:
        return "bad head", None, None
    try:
        body = b"".join(decoder.feed(data))
        if closed:
            decoder.connection_lost()
    except HTTPError:
        return "bad body", head.status, None
    if not decoder.done:
        return "incomplete", head.status, None
    return "ok", head.status, body


def client_responses(testcase, method, output, closed):
    """
    Read the client's bytes as responses to C{method} then GETs; its
    connection was C{closed}.

    :returns: C{(status, body, complete)} for each final response; only
        the last may be incomplete (C{complete} false), or of unknown
        completeness (L{None}: a body delimited by the end of the connection).
    """
    found = []
    reader = HeadReader(parse_response_head)
    while output:
        try:
            head, output = reader.feed(output)
        except HTTPError as error:
            testcase.fail(f"the client got a head it cannot parse ({error}): {output[:200]!r}")
        if head is None:
            found.append((None, None, False))
            break
        if head.status < 200:
            continue
        try:
            decoder = make_decoder(response_framing(method, head.status, head.version, head.headers), 502)
            body = b"".join(decoder.feed(output))
        except HTTPError as error:
            testcase.fail(f"the client got a body it cannot parse ({error}): {output[:200]!r}")
        if decoder.done:
            found.append((head.status, body, True))
        else:
            # A body that ends when the connection does (to an HTTP/1.0
            # client) cannot tell the client it was cut short.
            close_delimited = isinstance(decoder, CloseDecoder)
            found.append((head.status, body, None if close_delimited and closed else False))
            break
        output, method = decoder.rest, b"GET"
    return found


class ResponseTests(SynchronousTestCase):
    """
    Mutated responses from an origin, in pieces.
    """

    def check(self, method, request, raw, close, data, cache):
        """
        Run C{request} against an origin answering C{raw} in pieces (then
        closing if C{close}) and check what the client got.
        """
        run = Run(self, [request], cache=cache, script=(data.draw(pieces(raw)), close))
        output = run.run()
        self.assertTrue(output.startswith(b"HTTP/1.1 "), output[:80])
        found = client_responses(self, method, output, not run.client.open)
        outcome, status, body = expected(method, raw, close)
        first = found[0]
        event(f"origin's response: {outcome}; client's: {first[0]}")
        if outcome == "ok":
            self.assertEqual(first[:2], (status, body))
            self.assertIn(first[2], (True, None))
        elif outcome == "bad head":
            self.assertEqual(first[0], 502)
        elif outcome == "bad body":
            # The head went out: the client learns of the fault by the
            # connection closing before the response ends.
            self.assertEqual(first[0], status)
            self.assertIsNot(found[-1][2], True)
        elif outcome == "incomplete" and status is None:
            self.assertIn(first[0], (502, 504))
        elif outcome == "incomplete":
            self.assertEqual(first[0], status)
            self.assertIsNot(found[-1][2], True)

    @fuzz()
    @given(st.sampled_from(sorted(REQUESTS)), mutated(responses(), HEAD_TOKENS), st.booleans(), st.booleans(),
           st.data())
    def test_mutated_responses(self, method, raw, close, cache, data):
        """A mutated response reaches the client as it was, as a 502 page, or cut short; nothing hangs."""
        self.check(method, REQUESTS[method] + NEXT, raw, close, data, cache)

    @fuzz(0.5)
    @given(st.binary(max_size=300), st.booleans(), st.data())
    def test_arbitrary_bytes(self, raw, close, data):
        """Arbitrary bytes from an origin end in a 502 page or a response, never a traceback or a hang."""
        self.check(b"GET", REQUESTS[b"GET"], raw, close, data, False)

    @fuzz(0.5)
    @given(mutated(responses(), HEAD_TOKENS), st.booleans(), st.data())
    def test_http10_client(self, raw, close, data):
        """A mutated response to an HTTP/1.0 client ends as for an HTTP/1.1 one."""
        self.check(b"GET", OLD_GET, raw, close, data, False)
