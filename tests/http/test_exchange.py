"""
Tests for L{netproxy.http.exchange}: how a request is dispatched, the states
an exchange passes through on its way, and how it ends (the access log line,
the client's connection handed back or closed).
"""

from twisted.internet.error import ConnectionRefusedError

from netproxy.http.exchange import MAX_READ_AHEAD, Exchange
from netproxy.http.head import RequestHead
from netproxy.testing import connect, fail_connection
from tests.http_helpers import CLIENT, FRESH, OK, URL, CacheTestCase, ProxyTestCase, get, split_response


class StateTests(ProxyTestCase):
    """
    An exchange's C{state} says where it is: connecting, sent, relaying,
    finished.
    """

    def test_forwarded(self):
        """A new origin is connected to, the request sent, the response relayed, and the exchange finished."""
        self.send(get())
        exchange = self.protocol.exchange
        self.assertEqual(exchange.state, "connecting")
        origin = self.origin()
        self.assertEqual(exchange.state, "sent")
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh")
        self.assertEqual((exchange.state, exchange.status), ("relaying", 200))
        self.answer(origin, b"i")
        self.assertEqual(exchange.state, "finished")
        self.assertIsNone(self.protocol.exchange)

    def test_pooled(self):
        """On a pooled connection, the request is sent at once, without connecting."""
        self.send(get())
        self.answer(self.origin(), OK)
        self.send(get())
        self.assertEqual(self.protocol.exchange.state, "sent")

    def test_cancelled_while_connecting(self):
        """A client that leaves while the origin is connected to finishes the exchange, and the attempt is dropped."""
        self.send(get())
        exchange = self.protocol.exchange
        self.transport.loseConnection()
        self.assertEqual(exchange.state, "finished")
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_failed(self):
        """A refused connection finishes the exchange with an error page."""
        self.send(get())
        exchange = self.protocol.exchange
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(exchange.state, "finished")
        self.assertError(502, "connection refused")

    def test_client_paused_while_connecting(self):
        """The client is not read from while the origin is connected to, and is resumed once sent."""
        self.send(get())
        self.assertEqual((self.protocol.exchange.client_paused, self.transport.producerState),
                         (True, "paused"))
        self.origin()
        self.assertEqual((self.protocol.exchange.client_paused, self.transport.producerState),
                         (False, "producing"))

    def test_read_ahead(self):
        """Pipelined bytes past MAX_READ_AHEAD pause the client until the exchange ends."""
        self.send(get())
        self.origin()
        self.send(b"x" * (MAX_READ_AHEAD + 1))
        self.assertEqual((self.protocol.exchange.request_done, self.protocol.exchange.client_paused),
                         (True, True))


class CacheStateTests(CacheTestCase):
    """
    An exchange the cache answers waits, serves, or discards the origin's
    response.
    """

    def test_waiting(self):
        """A miss that another exchange is fetching waits, then follows its response."""
        _, first = connect(self.factory, CLIENT)
        first.protocol.dataReceived(get())
        _, second = connect(self.factory, CLIENT)
        second.protocol.dataReceived(get())
        waiter = second.protocol.exchange
        self.assertEqual(waiter.state, "waiting")
        self.answer(self.upstream(), FRESH)
        self.assertEqual((waiter.state, waiter.cache_result), ("serving", "HIT"))
        for _ in range(50):
            self.reactor.advance(0)
        self.assertEqual(waiter.state, "finished")
        self.assertEqual(split_response(second.value())[2], b"fresh")

    def test_discarding(self):
        """A 304 to a revalidation is discarded, and the refreshed stored response served."""
        self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: \"v1\"\r\n"
                          b"Content-Length: 3\r\n\r\nold")
        _, transport = connect(self.factory, CLIENT)
        transport.protocol.dataReceived(get())
        exchange = transport.protocol.exchange
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 3\r\n\r\n")
        self.assertEqual((exchange.state, exchange.cache_result), ("finished", "REVALIDATED"))
        self.assertEqual(split_response(transport.value())[2], b"old")

    def test_hit(self):
        """A hit is finished at once, without going upstream."""
        self.fetch(answer=FRESH)
        _, transport = connect(self.factory, CLIENT)
        transport.protocol.dataReceived(get())
        self.assertIsNone(transport.protocol.exchange)
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])


class DispatchTests(ProxyTestCase):
    """
    L{Exchange.begin} sends a request where it belongs.
    """

    def test_tunnel(self):
        """CONNECT turns the connection into a tunnel; no exchange remains."""
        self.send(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n")
        self.assertIsNone(self.protocol.exchange)
        self.assertIsNotNone(self.protocol.tunnel)

    def test_page(self):
        """An origin-form request for a page of the proxy's own is answered locally, and finished."""
        events = []
        self.factory.access_log.add_observer(events.append)
        self.send(b"GET /status HTTP/1.1\r\n\r\n")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertEqual([event["status"] for event in events], [200])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_no_cache(self):
        """Without a cache an exchange has no cache side, and goes upstream."""
        self.send(get())
        self.assertIsNone(self.protocol.exchange.caching)
        self.assertIsNotNone(self.protocol.exchange.forwarding)

    def test_background(self):
        """An exchange made by the proxy on its own says so."""
        head = RequestHead(b"GET", URL + b"/", (1, 1), [])
        self.assertEqual((Exchange(self.protocol, head).background, Exchange(self.protocol, head, True).background),
                         (False, True))


class ConnectionFieldTests(ProxyTestCase):
    """
    The Connection field of the proxy's own responses follows the client's
    wish and version.
    """

    def exchange(self, version, headers=()):
        exchange = Exchange(self.protocol, RequestHead(b"GET", b"/status", version, list(headers)))
        exchange._read_framing()
        return exchange

    def test_http11(self):
        """An HTTP/1.1 client keeping its connection needs no field."""
        self.assertEqual((self.exchange((1, 1)).connection_header(), self.exchange((1, 1)).connection_field()),
                         (None, b""))

    def test_http11_close(self):
        """A client that asked to close is told the connection closes."""
        exchange = self.exchange((1, 1), [(b"Connection", b"close")])
        self.assertEqual(exchange.connection_field(), b"Connection: close\r\n")

    def test_http10_keep_alive(self):
        """An HTTP/1.0 client that asked to keep its connection is told it is kept."""
        exchange = self.exchange((1, 0), [(b"Connection", b"keep-alive")])
        self.assertEqual(exchange.connection_header(), (b"Connection", b"keep-alive"))

    def test_http10(self):
        """An HTTP/1.0 client's connection closes by default."""
        self.assertEqual(self.exchange((1, 0)).connection_header(), (b"Connection", b"close"))
