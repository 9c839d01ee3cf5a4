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

import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.errors import HTTPError
from netproxy.http.body import ChunkedDecoder, make_decoder
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.responses import Cache
from netproxy.http.framing import request_framing
from netproxy.http.head import HeadReader, parse_request_head
from netproxy.http.proxy import ProxyFactory
from netproxy.http.upstream import UpstreamConnection
from netproxy.testing import MemoryStore, complete_connection, fail_connection
from tests.fuzz import fuzz
from tests.fuzz.harness import FuzzReactor, LogWatch, Peer, assert_closed_or_timed
from tests.fuzz.mutation import CHUNK_TOKENS, HEAD_TOKENS, mutated, pieces

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
TIMEOUT = 30
CONNECT_TIMEOUT = 10
# Enough turns of the clock for every timer of the proxy to run out: the
# request and answer timeouts, the idle timeout, the pool's expiry.
CLOCK_STEPS = 8
MAX_ROUNDS = 200
NAMES = {"origin.test": "192.0.2.10"}
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
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] ")


@st.composite
def chunked_bodies(draw):
    """
    A valid chunked body: chunks with and without extensions, the last
    chunk, maybe trailer fields.
    """
    out = []
    for piece in draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4)):
        extension = draw(st.sampled_from((b"", b";a=b", b' ; name="v"')))
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
    out.append(b"0\r\n")
    out.extend(draw(st.lists(st.sampled_from((b"X-Sum: 1\r\n", b"Expires: 0\r\n")), max_size=2)))
    out.append(b"\r\n")
    return b"".join(out)


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


def origin_response(method, status=200):
    """
    :returns: the in-memory origin's answer to a request with C{method}:
        fresh for a minute, so the cache may store it.
    """
    head = b"HTTP/1.1 %d OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\n" % (status,)
    return head if method == b"HEAD" else head + b"ok"


class StrictOrigin:
    """
    The origin end of one connection the proxy made: it parses what the
    proxy sends with the proxy's own strict parsers (so a request the proxy
    forwards must be one it would accept itself) and answers each complete
    request.  The destination of a CONNECT tunnel echoes what it reads.
    """

    def __init__(self, testcase, protocol, transport):
        self.testcase = testcase
        self.protocol = protocol
        self.transport = transport
        wrapped = getattr(protocol, "_wrappedProtocol", protocol)
        self.http = isinstance(wrapped, UpstreamConnection)
        self.read = 0
        self.reader = HeadReader(parse_request_head)
        self.head = None
        self.decoder = None
        self.body = []
        self.bodies = []

    def serve(self):
        """
        Read what the proxy sent since last time, and answer.

        :returns: whether anything was read.
        """
        data = self.transport.value()[self.read:]
        self.read += len(data)
        if not data or not self.transport.connected:
            return False
        if not self.http:
            self.protocol.dataReceived(data)
            return True
        try:
            self._requests(data)
        except HTTPError as error:
            self.testcase.fail(f"the proxy forwarded a request its own parser refuses ({error}): {self.transport.value()!r}")
        return True

    def _requests(self, data):
        while data and self.transport.connected:
            if self.head is None:
                self.head, data = self.reader.feed(data)
                if self.head is None:
                    return
                self.testcase.assertTrue(self.head.target.startswith(b"/") or self.head.target == b"*",
                                         self.head.target)
                self.decoder = make_decoder(request_framing(self.head.version, self.head.headers))
            self.body.extend(self.decoder.feed(data))
            if not self.decoder.done:
                return
            data = self.decoder.rest
            self.bodies.append(b"".join(self.body))
            self.body = []
            method, self.head = self.head.method, None
            self.protocol.dataReceived(origin_response(method))


class Run:
    """
    One input through a fresh proxy: a client sending C{chunks}, origins
    answering, then the clock run past every timeout.
    """

    def __init__(self, testcase, chunks, cache=False, refuse=(), close_at_end=False):
        self.testcase = testcase
        self.reactor = reactor = FuzzReactor(NAMES)
        self.factory = ProxyFactory(reactor, allow=RuleSet([parse_rule("127.0.0.0/8")]),
                                    rules=RuleSet([parse_rule("192.0.2.66"), parse_rule("*:25")]),
                                    connect_ports={443}, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT,
                                    cache=Cache(MemoryStore(1 << 20, scheduler=next_turn(reactor))) if cache else None)
        self.refuse = list(refuse) or [False]
        self.origins = []
        self.client = Peer(self.factory, CLIENT, chunks)
        self.close_at_end = close_at_end

    def pump(self):
        """
        Deliver the client's bytes, let connection attempts succeed or be
        refused, and let the origins answer, until nothing moves.
        """
        for _ in range(MAX_ROUNDS):
            moved = self.client.deliver()
            while len(self.origins) < len(self.reactor.tcpClients):
                index = len(self.origins)
                self.origins.append(None)
                if self.reactor.connectors[index].stoppedConnecting:
                    continue
                if self.refuse[index % len(self.refuse)]:
                    fail_connection(self.reactor, ConnectionRefusedError(), index)
                else:
                    protocol, transport = complete_connection(self.reactor, index)
                    self.origins[index] = StrictOrigin(self.testcase, protocol, transport)
                moved = True
            for origin in self.origins:
                if origin is not None:
                    moved = origin.serve() or moved
            # The cache streams stored bodies on the next reactor turn.
            self.reactor.advance(0)
            if not moved:
                return
        self.testcase.fail("the exchange did not settle")

    def run(self):
        """
        Run the input, then the clock, checking the log and the
        connections as it goes.

        :returns: what the client received.
        """
        with LogWatch() as log:
            self.pump()
            if self.close_at_end and self.client.open:
                self.client.transport.loseConnection()
                self.pump()
            assert_closed_or_timed(self.testcase, self.reactor, self.client.transport, "client")
            for _ in range(CLOCK_STEPS):
                if not self.reactor.timers():
                    break
                self.reactor.advance(TIMEOUT + 1)
                self.pump()
            log.check(self.testcase, "proxy")
        self.check_connections()
        return self.client.output()

    def check_connections(self):
        """
        Past every timeout only an established tunnel may stay open, with
        its timer; every origin connection is closed but a tunnel's.
        """
        protocol = self.client.protocol
        tunnel = getattr(protocol, "tunnel", None)
        if self.client.open:
            self.testcase.assertIsNotNone(tunnel, "client connection still open past every timeout")
            self.testcase.assertIsNotNone(tunnel.destination)
            assert_closed_or_timed(self.testcase, self.reactor, self.client.transport, "tunnel")
        for origin in self.origins:
            if origin is not None and origin.http:
                self.testcase.assertFalse(origin.transport.connected, "origin connection still open")

    def check_answered(self, data):
        """
        A client that stayed and sent more than empty lines got an answer:
        the proxy's, starting with a status line, never a traceback.
        """
        output = self.client.output()
        if not self.close_at_end and data.strip(b"\r\n"):
            self.testcase.assertTrue(output, "no answer at all")
        if output:
            self.testcase.assertTrue(STATUS_LINE.match(output), output[:80])
        self.testcase.assertNotIn(b"Traceback", output)


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
