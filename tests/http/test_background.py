"""
Tests for L{netproxy.http.background}: the proxy's own requests, which
revalidate a stale response in the background (stale-while-revalidate)
while the client that found it stale is served at once.
"""

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.background import Background
from netproxy.http.head import RequestHead
from netproxy.http.message import parse_target
from netproxy.http.cache.responses import Cache
from netproxy.testing import MemoryStore, fail_connection
from tests.http_helpers import URL, CacheTestCase, make_factory, split_response


class BackgroundTests(SynchronousTestCase):
    """
    L{Background} stands in for a client: it marks its key as being
    revalidated while it runs, asks the origin plainly, and drops what it
    is sent.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor)
        self.factory.cache = Cache(MemoryStore(1024 * 1024))
        self.head = RequestHead(b"GET", URL + b"/page", (1, 0), [
            (b"Accept", b"text/html"), (b"Cache-Control", b"max-stale"), (b"If-None-Match", b'"x"')])
        self.background = Background(self.factory, self.head, b"key")

    def test_request(self):
        """The request is an HTTP/1.1 GET with the client's fields but its caching and preconditions."""
        self.assertEqual((self.background.head.method, self.background.head.version, self.background.head.headers),
                         (b"GET", (1, 1), [(b"Accept", b"text/html")]))

    def test_start(self):
        """Started, its key is being revalidated and its exchange dials the origin."""
        self.background.start()
        self.assertEqual(self.factory.cache.revalidating, {b"key"})
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 8000))
        self.assertTrue(self.background.exchange.background)

    def test_done(self):
        """Once its exchange is done, its key is no longer being revalidated."""
        self.background.start()
        self.background.exchange_done(True, b"")
        self.assertEqual((self.factory.cache.revalidating, self.background.exchange), (set(), None))

    def test_fail(self):
        """A failure is logged as a warning, the exchange cancelled and the key released."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.background.start()
        self.background.fail(HTTPError(502, "could not connect"))
        self.assertEqual(self.factory.cache.revalidating, set())
        [event] = [event for event in events if event["log_level"] == LogLevel.warn]
        self.assertEqual(event["reason"], "could not connect")

    def test_no_tunnel(self):
        """A background request never becomes a tunnel."""
        self.assertRaises(HTTPError, self.background.start_tunnel, parse_target(b"CONNECT", b"h:443"), b"")

    def test_access_log(self):
        """Its access line names the proxy itself, C{-}, as the client."""
        events = []
        self.factory.access_log.add_observer(events.append)
        self.background.log_access(self.background.head, 304, 0, self.reactor.seconds(), "REVALIDATED")
        [event] = events
        self.assertEqual((event["client"], event["status"], event["cache"]), ("-", 304, "REVALIDATED"))


class StaleWhileRevalidateTests(CacheTestCase):
    """
    stale-while-revalidate serves the stale response at once and
    revalidates it in the background, one revalidation at a time.
    """

    STORED = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nETag: \"v1\"\r\n"
              b"Content-Length: 3\r\n\r\nold")

    def setUp(self):
        super().setUp()
        self.fetch(answer=self.STORED)
        self.reactor.advance(10)

    def test_served_stale(self):
        """
        The stale response is served without waiting, and one conditional
        request goes upstream.
        """
        transport = self.fetch()
        self.assertEqual(split_response(transport.value())[2], b"old")
        self.assertEqual(self.field(transport, b"Cache-Status"),
                         b'netproxy; hit; ttl=-9; detail="stale-while-revalidate"')
        origin = self.upstream()
        self.assertIn(b'\r\nIf-None-Match: "v1"\r\n', origin.value())
        self.assertEqual(self.cache_results(), ["MISS", "STALE"])

    def test_refreshed(self):
        """
        A 304 to the background request refreshes the entry: the next
        request is a fresh hit.
        """
        self.fetch()
        self.answer(self.upstream(), b"HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\n\r\n")
        self.fetch()
        self.assertEqual(self.cache_results(), ["MISS", "STALE", "REVALIDATED", "HIT"])
        self.assertEqual(self.events[2]["client"], "-")
        self.assertEqual(self.factory.cache.revalidating, set())

    def test_replaced(self):
        """
        A full response to the background request is stored instead.
        """
        self.fetch()
        self.answer(self.upstream(), b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nnew")
        self.turns()
        hit = self.fetch()
        self.assertEqual(split_response(hit.value())[2], b"new")

    def turns(self):
        for _ in range(50):
            self.reactor.advance(0)

    def test_one_at_a_time(self):
        """
        Stale requests while a revalidation runs start no other.
        """
        for _ in range(3):
            self.assertEqual(split_response(self.fetch().value())[2], b"old")
        self.upstream()
        self.assertEqual(self.upstream_requests(), 2)

    def test_failed(self):
        """
        A background revalidation that cannot reach the origin is logged,
        and a later stale request tries again.
        """
        self.upstream().loseConnection()
        self.fetch()
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(self.factory.cache.revalidating, set())
        self.fetch()
        self.assertEqual(len(self.reactor.tcpClients), 3)

    def test_window_passed(self):
        """
        Past its stale-while-revalidate window, the response is revalidated
        while the client waits.
        """
        self.reactor.advance(60)
        transport = self.fetch()
        self.assertEqual(transport.value(), b"")
        self.answer(self.upstream(), b"HTTP/1.1 304 Not Modified\r\n\r\n")
        self.turns()
        self.assertEqual(split_response(transport.value())[2], b"old")
        self.assertEqual(self.cache_results(), ["MISS", "REVALIDATED"])
