"""
Tests for L{netproxy.http.fetch}: one GET through a proxy, reported as
status, C{Cache-Status}, C{Age} and time taken.

What the client makes of a response is tested with treq's own test double,
L{RequestTraversalAgent}, answering from an in-memory resource; that the
request goes to the proxy, in absolute form, is tested with
L{proxy_agent}'s connection on a L{MemoryReactorClock}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, DNSLookupError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent

from netproxy.errors import ClientError
from netproxy.http.fetch import Fetched, fetch, fetch_through_proxy

URL = "http://origin.example/page"
BODY = b"a body \x00\xff of some bytes"


class _Page(Resource):
    """
    Answers with the status, fields and body it is given, after advancing
    the test's clock by C{delay}; with C{hold}, it sends the head and the
    first half of the body and waits.

    :ivar seen: the C{(method, uri)} of each request.
    :ivar held: the requests left waiting.
    :ivar lost: the failures of those whose connection was lost.
    """

    isLeaf = True

    def __init__(self, clock, status=200, fields=(), body=BODY, delay=0.0, hold=False, length=True):
        super().__init__()
        self.clock = clock
        self.status = status
        self.fields = fields
        self.body = body
        self.delay = delay
        self.hold = hold
        self.length = length
        self.seen = []
        self.held = []
        self.lost = []

    def render(self, request):
        self.seen.append((request.method, request.uri))
        self.clock.advance(self.delay)
        request.setResponseCode(self.status)
        for name, value in self.fields:
            request.responseHeaders.addRawHeader(name, value)
        if self.length:
            request.setHeader(b"content-length", b"%d" % len(self.body))
        if not self.hold:
            return self.body
        request.write(self.body[:len(self.body) // 2])
        self.held.append(request)
        request.notifyFinish().addErrback(self.lost.append)
        return NOT_DONE_YET


class ReportTests(SynchronousTestCase):
    """
    L{Fetched.report}: one C{Name: value} line per field.
    """

    def test_fields(self):
        """Status, Cache-Status, Age and the time (to the millisecond) each get a line."""
        fetched = Fetched(200, "OK", "netproxy; hit; ttl=3590", "10", 0.0042, 120)
        self.assertEqual(fetched.report(),
                         "Status: 200 OK\nCache-Status: netproxy; hit; ttl=3590\nAge: 10\nTime: 0.004 s\n")

    def test_absent_fields(self):
        """A missing Cache-Status or Age is shown as '-', so each line is always there."""
        fetched = Fetched(502, "Bad Gateway", None, None, 1.5, 0)
        self.assertEqual(fetched.report(), "Status: 502 Bad Gateway\nCache-Status: -\nAge: -\nTime: 1.500 s\n")

    def test_empty_phrase(self):
        """A status without a reason phrase has no trailing space."""
        self.assertTrue(Fetched(200, "", None, None, 0, 0).report().startswith("Status: 200\n"))


class FetchTests(SynchronousTestCase):
    """
    L{fetch} with a treq client answered by an in-memory resource.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()

    def fetch(self, page, timeout=5.0):
        """
        :returns: the L{Deferred} of L{fetch} for L{URL}, answered by C{page},
            and the agent (to flush).
        """
        agent = RequestTraversalAgent(page)
        return Deferred.fromCoroutine(fetch(self.clock, HTTPClient(agent), URL, timeout)), agent

    def fetched(self, page):
        """
        :returns: what L{fetch} got from C{page}.
        """
        d, _ = self.fetch(page)
        return self.successResultOf(d)

    def test_hit(self):
        """Status, reason, Cache-Status, Age, body size and the time from request to end of body are kept."""
        page = _Page(self.clock, fields=[(b"Cache-Status", b"netproxy; hit; ttl=57"), (b"Age", b"3")], delay=0.25)
        self.assertEqual(self.fetched(page), Fetched(200, "OK", "netproxy; hit; ttl=57", "3", 0.25, len(BODY)))
        self.assertEqual(page.seen, [(b"GET", b"/page")])

    def test_no_cache_fields(self):
        """A response without Cache-Status or Age gives None for both."""
        fetched = self.fetched(_Page(self.clock))
        self.assertEqual((fetched.cache_status, fetched.age), (None, None))

    def test_several_fields(self):
        """Several Cache-Status fields (one per cache on the way) are joined in order."""
        page = _Page(self.clock, fields=[(b"Cache-Status", b"netproxy; fwd=uri-miss"),
                                         (b"Cache-Status", b"edge; hit")])
        self.assertEqual(self.fetched(page).cache_status, "netproxy; fwd=uri-miss, edge; hit")

    def test_error_status(self):
        """An error status from the proxy is a response like any other, not a failure."""
        fetched = self.fetched(_Page(self.clock, status=502, body=b"<html>bad gateway</html>"))
        self.assertEqual((fetched.status, fetched.phrase), (502, "Bad Gateway"))

    def test_no_redirect(self):
        """A redirect is reported as it came, not followed."""
        page = _Page(self.clock, status=302, fields=[(b"Location", b"http://origin.example/elsewhere")], body=b"")
        self.assertEqual(self.fetched(page).status, 302)
        self.assertEqual(page.seen, [(b"GET", b"/page")])

    def test_body_until_close(self):
        """A body delimited by the end of the connection is counted whole."""
        self.assertEqual(self.fetched(_Page(self.clock, length=False)).size, len(BODY))

    def test_no_answer_in_time(self):
        """No response within the timeout is a ClientError saying so."""
        page = _Page(self.clock, hold=True)
        page.render = lambda request: NOT_DONE_YET
        d, _ = self.fetch(page, timeout=2)
        self.assertNoResult(d)
        self.clock.advance(2)
        error = self.failureResultOf(d, ClientError).value
        self.assertEqual(str(error), "no complete answer from the proxy within 2 seconds")

    def test_body_too_slow(self):
        """A body still coming when the timeout ends is a ClientError, and its connection is dropped."""
        page = _Page(self.clock, hold=True)
        d, agent = self.fetch(page, timeout=2.5)
        agent.flush()
        self.assertNoResult(d)
        [request] = page.held
        self.clock.advance(2.5)
        agent.flush()
        self.failureResultOf(d, ClientError)
        self.assertEqual(len(page.lost), 1)


class ProxyTests(SynchronousTestCase):
    """
    L{fetch_through_proxy} connects to the proxy and asks it for the URL in
    absolute form.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()

    def start(self, proxy=("127.0.0.1", 3128), timeout=5.0):
        """
        Start a fetch of L{URL} through C{proxy}.

        :returns: its L{Deferred}, and the factory the proxy connection was
            made with.
        """
        d = Deferred.fromCoroutine(fetch_through_proxy(self.reactor, URL, proxy, timeout))
        [(host, port, factory, connect_timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, connect_timeout), (proxy[0], proxy[1], timeout))
        return d, factory

    def connect(self, factory):
        """
        :returns: the connected client protocol and its transport.
        """
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_request_to_proxy(self):
        """The GET goes to the proxy with the absolute URL as its target; the answer is reported."""
        d, factory = self.start()
        protocol, transport = self.connect(factory)
        request = transport.value()
        self.assertTrue(request.startswith(b"GET http://origin.example/page HTTP/1.1\r\n"), request)
        self.assertIn(b"\r\nHost: origin.example\r\n", request)
        self.reactor.advance(0.125)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nCache-Status: netproxy; fwd=uri-miss; fwd-status=200; stored\r\n"
                              b"Content-Length: 5\r\n\r\nhello")
        self.assertEqual(self.successResultOf(d),
                         Fetched(200, "OK", "netproxy; fwd=uri-miss; fwd-status=200; stored", None, 0.125, 5))

    def test_refused(self):
        """A proxy refusing the connection is a ClientError naming the proxy and the reason."""
        d, factory = self.start()
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(str(self.failureResultOf(d, ClientError).value),
                         "could not connect to the proxy 127.0.0.1:3128: connection refused")

    def test_unknown_host(self):
        """A proxy name that does not resolve is a ClientError saying so."""
        d, factory = self.start()
        factory.clientConnectionFailed(None, Failure(DNSLookupError("proxy.invalid")))
        self.assertEqual(str(self.failureResultOf(d, ClientError).value),
                         "could not connect to the proxy 127.0.0.1:3128: host not found")

    def test_ipv6_proxy_named(self):
        """An IPv6 proxy address is named in brackets."""
        d, factory = self.start(("::1", 3128))
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertIn("the proxy [::1]:3128: ", str(self.failureResultOf(d, ClientError).value))

    def test_closed_without_answer(self):
        """A proxy that closes the connection before answering is a ClientError saying so."""
        d, factory = self.start()
        protocol, _ = self.connect(factory)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(str(self.failureResultOf(d, ClientError).value),
                         "the proxy 127.0.0.1:3128 closed the connection without answering")

    def test_body_cut_short(self):
        """A body that ends before its Content-Length is a ClientError, not a success."""
        d, factory = self.start()
        protocol, _ = self.connect(factory)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(str(self.failureResultOf(d, ClientError).value),
                         "the answer from the proxy 127.0.0.1:3128 was cut short after 5 bytes of body")

    def test_malformed(self):
        """An answer that is not HTTP is a ClientError saying it was malformed."""
        d, factory = self.start()
        protocol, _ = self.connect(factory)
        protocol.dataReceived(b"DONE\r\n\r\n")
        error = str(self.failureResultOf(d, ClientError).value)
        self.assertTrue(error.startswith("the answer from the proxy 127.0.0.1:3128 was malformed: "), error)
        self.assertEqual(len(error.splitlines()), 1)

    def test_connect_timeout(self):
        """No connection within the timeout is a ClientError naming the time."""
        d, _ = self.start(timeout=3)
        self.reactor.advance(3)
        self.assertEqual(str(self.failureResultOf(d, ClientError).value),
                         "no complete answer from the proxy 127.0.0.1:3128 within 3 seconds")
