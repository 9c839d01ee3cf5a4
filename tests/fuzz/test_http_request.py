"""
Fuzz tests of the HTTP proxy's client side: valid requests, pipelined and
then mutated (bytes flipped, ranges cut or repeated, line ends, NUL,
obs-fold and overlong lines inserted), and chunked request bodies, go into
a real L{ProxyProtocol} in random pieces; a strict in-memory origin parses
whatever the proxy forwards and answers it.

Each input must end with the client answered (the origin's response or the
proxy's error page), nothing in the log worse than a warning, every request
the origin got parseable, and, once the clock has passed the proxy's
timeouts, every connection closed but an established CONNECT tunnel (which
may idle, with its timer).
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.body import ChunkedDecoder
from tests.fuzz import fuzz
from tests.fuzz.proxy_run import Run
from tests.fuzz.mutation import CHUNK_TOKENS, HEAD_TOKENS, chunked_bodies, mutated, pieces

HOSTS = (b"192.0.2.10", b"192.0.2.10:8000", b"origin.test", b"[2001:db8::1]:8080", b"unknown.test", b"192.0.2.66")
FIELDS = (
    b"Accept: */*", b"Host: elsewhere.test", b"Connection: close", b"Connection: keep-alive, X-Hop",
    b"Proxy-Connection: keep-alive", b"Keep-Alive: timeout=5", b"Cache-Control: max-age=0",
    b"Cache-Control: only-if-cached", b"Cache-Control: no-store", b"Pragma: no-cache", b'If-None-Match: "v1"',
    b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT", b"Range: bytes=0-0", b"Via: 1.0 other",
    b"Expect: 100-continue", b"Upgrade: websocket", b"TE: trailers", b"Proxy-Authorization: Basic dTpw",
    b"X-Empty:", b"User-Agent: fuzz\x80",
)
METHODS = (b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"PURGE")


@st.composite
def requests(draw):
    """
    A valid request for the proxy: a method, a target of the kind it
    takes (absolute-form, authority-form for CONNECT, origin-form for its
    own pages), header fields, and a body framed by length or chunks.
    """
    method = draw(st.sampled_from(METHODS))
    version = draw(st.sampled_from((b"1.1", b"1.1", b"1.0")))
    host = draw(st.sampled_from(HOSTS))
    if method == b"CONNECT":
        host = host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host.rpartition(b"]:")[0] + b"]"
        target = host + draw(st.sampled_from((b":443", b":443", b":25")))
    elif draw(st.integers(0, 9)) == 0:
        target = draw(st.sampled_from((b"/metrics", b"/status", b"/", b"/status?x")))
    else:
        target = b"http://" + host + draw(st.sampled_from((b"", b"/", b"/a/b?c=d", b"/%7e", b"/x#frag")))
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=4))
    body = b""
    framing = draw(st.sampled_from(("none", "none", "length", "chunked")))
    if framing == "length":
        body = draw(st.binary(max_size=40))
        fields.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked" and version == b"1.1":
        body = draw(chunked_bodies())
        fields.append(b"Transfer-Encoding: chunked")
    head = b"%s %s HTTP/%s\r\n" % (method, target, version) + b"".join(f + b"\r\n" for f in fields)
    return head + b"\r\n" + body


class RequestHeadTests(SynchronousTestCase):
    """
    Requests built valid, then mutated, and cut into random pieces.
    """

    @fuzz()
    @given(st.data())
    def test_mutated_requests(self, data):
        """Mutated pipelined requests end answered, with no traceback and no connection left without a timer."""
        base = st.lists(requests(), min_size=1, max_size=3).map(b"".join)
        raw = data.draw(mutated(base, HEAD_TOKENS))
        run = Run(self, data.draw(pieces(raw)), cache=data.draw(st.booleans()),
                  refuse=data.draw(st.lists(st.booleans(), max_size=3)), close_at_end=data.draw(st.booleans()))
        run.run()
        run.check_answered(raw)

    @fuzz(0.5)
    @given(st.binary(max_size=300), st.data())
    def test_arbitrary_bytes(self, raw, data):
        """Arbitrary bytes end in an error page or a request, never a traceback or a hang."""
        run = Run(self, data.draw(pieces(raw)))
        run.run()
        run.check_answered(raw)


class ChunkedBodyTests(SynchronousTestCase):
    """
    A valid request head with a chunked body, mutated, followed by one more
    request.
    """

    @fuzz()
    @given(st.data())
    def test_mutated_chunked_body(self, data):
        """A valid chunked body reaches the origin decoded; an invalid one is a 400 page; nothing hangs."""
        body = data.draw(mutated(chunked_bodies(), CHUNK_TOKENS))
        head = b"POST http://192.0.2.10/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        after = b"GET http://192.0.2.10/next HTTP/1.1\r\n\r\n"
        run = Run(self, data.draw(pieces(head + body + after)))
        output = run.run()
        run.check_answered(head)
        decoder = ChunkedDecoder()
        try:
            expected = b"".join(decoder.feed(body + after))
        except HTTPError:
            self.assertRegex(output, rb"HTTP/1\.1 400 ")
            self.assertNotIn(b"HTTP/1.1 200 ", output)
            return
        uploads = [origin for origin in run.origins if origin is not None and origin.bodies]
        if decoder.done:
            self.assertEqual(uploads[0].bodies[0], expected)
            self.assertTrue(output.startswith(b"HTTP/1.1 200 "), output[:80])
        else:
            # The body never ended: the client was told it was too slow.
            self.assertRegex(output, rb"HTTP/1\.1 408 ")
