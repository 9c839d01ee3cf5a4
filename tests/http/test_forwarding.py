"""
Tests for L{netproxy.http.forwarding}, the origin's side of an exchange:
requests from an in-memory client go to an in-memory origin through a
L{MemoryReactorClock}; headers are rewritten for the next hop, connections
persist (or not) as HTTP/1.x says, upstream connections are pooled, bodies
stream with back-pressure both ways, and every wait is bounded.
"""

from ipaddress import ip_address

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher

from netproxy.http.exchange import MAX_READ_AHEAD
from netproxy.testing import connect, fail_connection
from netproxy.this_host import LocalDestinations
from tests.address_helpers import THIS_HOST
from tests.http_helpers import (
    CLIENT,
    OK,
    OK_FORWARDED,
    LocalDestinationTestCase,
    ProxyTestCase,
    get,
    make_factory,
    split_response,
)


class ForwardingTests(ProxyTestCase):
    """
    Requests go upstream in origin-form with their hop-by-hop fields
    removed, a Host from the URL and our Via; responses come back likewise.
    """

    def test_connects_to_url(self):
        """The upstream connection goes to the URL's host and port, with the connect timeout."""
        self.send(get())
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8000, 10))

    def test_default_port(self):
        """A URL without a port goes to port 80, and its Host has no port."""
        self.send(b"GET http://127.0.0.1/a HTTP/1.1\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 80))
        self.assertEqual(self.origin().value(), b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_hop_by_hop_removed(self):
        """Hop-by-hop fields and the fields Connection names are not forwarded; the others are, in order."""
        self.send(get(b"/p?q=1", b"X-First: 1\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
                                 b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic dTpw\r\n"
                                 b"TE: trailers\r\nTrailer: X-Sum\r\nUpgrade: websocket\r\nX-Hop: 1\r\n"
                                 b"X-Last: 2\r\n"))
        self.assertEqual(self.origin().value(), b"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-First: 1\r\n"
                                                b"X-Last: 2\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_host_from_url(self):
        """The client's Host is replaced by the URL's authority, placed first."""
        self.send(get(headers=b"Accept: */*\r\nHost: elsewhere.example\r\n"))
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\n"
                                                b"Via: 1.1 netproxy\r\n\r\n")

    def test_via_appended(self):
        """A Via from an earlier proxy is kept and ours follows it."""
        self.send(get(headers=b"Via: 1.1 other-proxy\r\n"))
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                                                b"Via: 1.1 other-proxy\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_http10_request(self):
        """An HTTP/1.0 request goes upstream as HTTP/1.1, with Via saying 1.0."""
        self.send(get(version=b"1.0"))
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.0 netproxy\r\n\r\n")

    def test_other_methods(self):
        """Any method is forwarded as it is."""
        self.send(get(method=b"DELETE", path=b"/item/1"))
        self.assertTrue(self.origin().value().startswith(b"DELETE /item/1 HTTP/1.1\r\n"))

    def test_response(self):
        """The response is relayed with Via added and hop-by-hop fields removed."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
                            b"Upgrade: h2c\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                                 b"Content-Length: 2\r\nVia: 1.1 netproxy\r\n\r\nhi")

    def test_interim_response_relayed(self):
        """A 100 Continue from the origin is relayed to an HTTP/1.1 client before the final response."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\nVia: 1.1 netproxy\r\n\r\n")
        self.answer(origin, OK)
        self.assertTrue(self.transport.value().endswith(OK_FORWARDED))

    def test_interim_response_without_length(self):
        """A Content-Length on a 1xx is not passed on: no 1xx may carry one (RFC 9110 8.6)."""
        self.send(get())
        self.answer(self.origin(), b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.transport.value(),
                         b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_no_content_without_length(self):
        """A 204's Content-Length is dropped (RFC 9110 8.6), and the connection stays for the next request."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nVia: 1.1 netproxy\r\n\r\n")
        self.transport.clear()
        self.send(get())
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.answer(origin, OK)
        self.assertTrue(self.transport.value().endswith(OK_FORWARDED))

    def test_interim_response_not_sent_to_http10(self):
        """An HTTP/1.0 client never sees a 1xx response, only the final one."""
        self.send(get(version=b"1.0"))
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_response_in_pieces(self):
        """A response arriving a byte at a time is relayed whole."""
        self.send(get())
        origin = self.origin()
        for index in range(len(OK)):
            self.answer(origin, OK[index:index + 1])
        self.assertEqual(self.transport.value(), OK_FORWARDED)

    def test_access_logged(self):
        """A completed exchange is reported to the access log with client, method, URL, status and size."""
        events = []
        self.factory.access_log.add_observer(events.append)
        self.send(get(b"/x"))
        self.answer(self.origin(), OK)
        [event] = events
        self.assertEqual((event["client"], event["method"], event["url"], event["status"], event["size"]),
                         ("127.0.0.1", b"GET", b"http://127.0.0.1:8000/x", 200, 2))

    def test_access_log_not_in_main_log(self):
        """Access events never reach the daemon's main log."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.factory.access_log.add_observer(lambda event: None)
        self.send(get(b"/x"))
        self.answer(self.origin(), OK)
        self.assertEqual([e for e in events if e.get("status") == 200], [])


class UpstreamErrorTests(ProxyTestCase):
    """
    An origin that cannot be reached, or misbehaves before its response
    has started, becomes a 502 or 504 page.
    """

    def test_refused(self):
        """A refused connection is 502."""
        self.send(get())
        fail_connection(self.reactor, ConnectionRefusedError())
        # HostnameEndpoint gives up at its next attempt, 0.3 s later.
        self.reactor.advance(0.3)
        self.assertError(502, "could not connect to 127.0.0.1:8000: connection refused")

    def test_connect_timeout(self):
        """An origin that does not accept in time is 504."""
        self.send(get())
        fail_connection(self.reactor, TimeoutError())
        self.reactor.advance(0.3)
        self.assertError(504, "could not connect to 127.0.0.1:8000: timed out")

    def test_closed_before_answering(self):
        """An origin that closes without answering is 502."""
        self.send(get())
        self.origin().loseConnection()
        self.assertError(502, "the upstream server closed the connection before answering")

    def test_malformed_response_head(self):
        """A malformed status line is 502, and the origin's connection is closed."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 OK\r\n\r\n")
        self.assertError(502, "upstream sent a malformed response head")
        self.assertFalse(origin.connected)

    def test_invalid_response_length(self):
        """A response with an invalid Content-Length is 502."""
        self.send(get())
        self.answer(self.origin(), b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        self.assertError(502, "invalid Content-Length in the response")

    def test_transfer_coding_not_dropped(self):
        """An origin's gzip under chunked is 502 (RFC 9112 6.1), never relayed as chunked with its coding lost."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\n\x1f\x8b\x08\x00\x00\r\n")
        self.assertError(502, "the upstream server used a transfer coding other than chunked")
        self.assertNotIn(b"\x1f\x8b", self.transport.value())
        self.assertFalse(origin.connected)
        [event] = [e for e in events if e.get("status") == 502]
        self.assertEqual(event["log_level"], LogLevel.error)

    def test_never_answers(self):
        """An origin that accepts but does not answer within the timeout is 504, and is closed."""
        self.send(get())
        origin = self.origin()
        self.reactor.advance(29)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(1)
        self.assertError(504, "127.0.0.1:8000 did not answer within 30 seconds")
        self.assertFalse(origin.connected)

    def test_cut_short(self):
        """An origin that closes in the middle of a body gets the client's connection aborted, without a page."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        origin.loseConnection()
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nhalf"))
        self.assertTrue(self.transport.disconnected)

    def test_client_gone(self):
        """A client that disconnects while waiting gets the origin's connection closed."""
        self.send(get())
        origin = self.origin()
        self.transport.loseConnection()
        self.assertFalse(origin.connected)
        self.assertEqual(len(self.factory.pool), 0)

    def test_client_gone_while_connecting(self):
        """A client that disconnects before the origin accepts cancels the attempt."""
        self.send(get())
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)


class KeepAliveTests(ProxyTestCase):
    """
    The client's connection persists when both its request and the
    response's framing allow it, and pipelined requests are answered in
    order.
    """

    def test_http11_default(self):
        """An HTTP/1.1 exchange leaves the client connected, ready for the next request."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)
        self.assertTrue(self.transport.connected)
        self.transport.clear()
        self.send(get(b"/2"))
        self.answer(origin, OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)

    def test_connection_close(self):
        """A request with Connection: close gets Connection: close and the connection closed."""
        self.send(get(headers=b"Connection: close\r\n"))
        self.answer(self.origin(), OK)
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n"
                                                 b"Connection: close\r\n\r\nhi")
        self.assertFalse(self.transport.connected)

    def test_proxy_connection_close(self):
        """Proxy-Connection: close counts like Connection: close."""
        self.send(get(headers=b"Proxy-Connection: close\r\n"))
        self.answer(self.origin(), OK)
        self.assertFalse(self.transport.connected)

    def test_http10_default(self):
        """An HTTP/1.0 request without keep-alive gets Connection: close and the connection closed."""
        self.send(get(version=b"1.0"))
        self.answer(self.origin(), OK)
        self.assertIn((b"Connection", b"close"), split_response(self.transport.value())[1])
        self.assertFalse(self.transport.connected)

    def test_http10_keep_alive(self):
        """An HTTP/1.0 request with Connection: keep-alive gets it back and the connection stays."""
        self.send(get(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        self.answer(self.origin(), OK)
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n"
                                                 b"Connection: keep-alive\r\n\r\nhi")
        self.assertTrue(self.transport.connected)

    def test_close_delimited(self):
        """
        A response without length is relayed until the origin closes, chunked
        for an HTTP/1.1 client, whose connection stays open for the next request.
        """
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome")
        self.answer(origin, b" more")
        origin.loseConnection()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                                 b"Via: 1.1 netproxy\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 b"4\r\nsome\r\n5\r\n more\r\n0\r\n\r\n")
        self.assertTrue(self.transport.connected)
        self.transport.clear()
        self.send(get())
        self.answer(self.origin(), OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)

    def test_close_delimited_to_http10(self):
        """An HTTP/1.0 client gets a response without length as it came: ended by closing."""
        self.send(get(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome")
        self.answer(origin, b" more")
        self.assertTrue(self.transport.connected)
        origin.loseConnection()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                                 b"Via: 1.1 netproxy\r\nConnection: close\r\n\r\nsome more")
        self.assertFalse(self.transport.connected)
        self.assertFalse(self.transport.disconnected)

    def test_chunked_to_http11(self):
        """A chunked response is re-chunked to an HTTP/1.1 client, extensions and trailers dropped."""
        self.send(get())
        self.answer(self.origin(), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\nX-Sum: 1\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nVia: 1.1 netproxy\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\n"
                                                 b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n")
        self.assertTrue(self.transport.connected)

    def test_chunked_to_http10(self):
        """A chunked response goes to an HTTP/1.0 client unchunked and close-delimited."""
        self.send(get(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        self.answer(self.origin(), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nVia: 1.1 netproxy\r\n"
                                                 b"Connection: close\r\n\r\nWikipedia")
        self.assertFalse(self.transport.connected)

    def test_chunked_with_length(self):
        """A Content-Length beside Transfer-Encoding is not forwarded: the chunking decides."""
        self.send(get())
        self.answer(self.origin(), b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"2\r\nhi\r\n0\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nVia: 1.1 netproxy\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")

    def test_head_response(self):
        """A response to HEAD keeps its Content-Length and has no body; the connection stays."""
        self.send(get(method=b"HEAD"))
        self.answer(self.origin(), b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nVia: 1.1 netproxy\r\n\r\n")
        self.assertTrue(self.transport.connected)

    def test_no_content(self):
        """A 204 response ends at its head."""
        self.send(get())
        self.answer(self.origin(), b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 204 No Content\r\nVia: 1.1 netproxy\r\n\r\n")
        self.assertTrue(self.transport.connected)

    def test_pipelined(self):
        """Pipelined requests are sent upstream one at a time and answered in order."""
        self.send(get(b"/1") + get(b"/2") + get(b"/3")[:10])
        origin = self.origin()
        self.assertEqual(origin.value().count(b"GET "), 1)
        origin.clear()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        self.assertTrue(origin.value().startswith(b"GET /2 HTTP/1.1\r\n"))
        origin.clear()
        self.send(get(b"/3")[10:])
        self.assertEqual(origin.value(), b"")
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        self.assertTrue(origin.value().startswith(b"GET /3 HTTP/1.1\r\n"))
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3")
        bodies = [split_response(b"HTTP/1.1" + part)[2] for part in self.transport.value().split(b"HTTP/1.1")[1:]]
        self.assertEqual(bodies, [b"1", b"2", b"3"])
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_pipelined_after_body(self):
        """A request pipelined after a body is read from the byte after the body."""
        self.send(get(method=b"POST", headers=b"Content-Length: 3\r\n") + b"abc" + get(b"/next"))
        origin = self.origin()
        self.assertTrue(origin.value().endswith(b"\r\n\r\nabc"))
        origin.clear()
        self.answer(origin, OK)
        self.assertTrue(origin.value().startswith(b"GET /next HTTP/1.1\r\n"))

    def test_pipelined_after_close(self):
        """Requests pipelined after Connection: close are not answered."""
        self.send(get(headers=b"Connection: close\r\n") + get(b"/2"))
        origin = self.origin()
        self.answer(origin, OK)
        self.assertEqual(origin.value().count(b"GET "), 1)
        self.assertFalse(self.transport.connected)

    def test_idle_after_exchange(self):
        """A kept-alive connection idle for the timeout is closed without a page."""
        self.send(get())
        self.answer(self.origin(), OK)
        self.transport.clear()
        self.reactor.advance(30)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.connected)

    def test_waiting_is_not_idle(self):
        """A client waiting on its response is not closed by its own idle timeout."""
        self.send(get())
        origin = self.origin()
        self.reactor.advance(20)
        self.answer(origin, b"HTTP/1.1 200 OK\r\n\r\n")
        self.reactor.advance(20)
        self.assertTrue(self.transport.connected)

    def test_idle_after_long_exchange(self):
        """A kept-alive connection whose response outlasted the idle timeout is still closed once idle."""
        self.send(get())
        origin = self.origin()
        self.reactor.advance(20)
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        self.reactor.advance(20)
        self.answer(origin, b"h")
        self.reactor.advance(20)
        self.answer(origin, b"i")
        self.assertTrue(self.transport.connected)
        self.reactor.advance(30)
        self.assertFalse(self.transport.connected)


class PoolTests(ProxyTestCase):
    """
    Upstream connections are reused across requests and clients when the
    origin allows it, and a stale pooled connection costs a GET one retry.
    """

    def test_reuse(self):
        """A second request to the same origin reuses the upstream connection."""
        self.send(get(b"/1"))
        origin = self.origin()
        self.answer(origin, OK)
        origin.clear()
        self.send(get(b"/2"))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(origin.value().startswith(b"GET /2 HTTP/1.1\r\n"))

    def test_reuse_across_clients(self):
        """Another client's request to the same origin reuses the upstream connection."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        self.transport.loseConnection()
        origin.clear()
        _, other = connect(self.factory, IPv4Address("TCP", "127.0.0.2", 40001))
        self.send(get(b"/other"), other)
        self.answer(origin, OK)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(other.value(), OK_FORWARDED)

    def test_client_close_keeps_upstream(self):
        """A client's Connection: close does not stop the upstream connection from being pooled."""
        self.send(get(headers=b"Connection: close\r\n"))
        self.answer(self.origin(), OK)
        self.assertEqual(len(self.factory.pool), 1)

    def test_other_origin(self):
        """A request to another origin does not take a pooled connection."""
        self.send(get())
        self.answer(self.origin(), OK)
        self.send(b"GET http://127.0.0.1:8001/ HTTP/1.1\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_origin_says_close(self):
        """An origin that answers Connection: close is not reused, and its connection is closed."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
        self.assertFalse(origin.connected)
        self.assertEqual(self.transport.value(), OK_FORWARDED)
        self.send(get(b"/2"))
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_http10_origin(self):
        """An HTTP/1.0 origin without keep-alive is not reused."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertFalse(origin.connected)
        self.assertEqual(len(self.factory.pool), 0)

    def test_close_delimited_not_reused(self):
        """A connection whose response ended by closing is not reused."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\n\r\nhi")
        origin.loseConnection()
        _, other = connect(self.factory, CLIENT)
        self.send(get(), other)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_extra_bytes_not_reused(self):
        """An origin that sends bytes after its response is not reused."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK + b"junk")
        self.assertFalse(origin.connected)
        self.assertEqual(len(self.factory.pool), 0)

    def test_idle_closed_by_origin(self):
        """A pooled connection the origin closes is dropped from the pool."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        origin.loseConnection()
        self.assertEqual(len(self.factory.pool), 0)
        self.send(get(b"/2"))
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_stale_retried(self):
        """A GET on a pooled connection the origin closed before answering is retried once on a new one."""
        self.send(get())
        stale = self.origin()
        self.answer(stale, OK)
        self.transport.clear()
        self.send(get(b"/again"))
        stale.loseConnection()
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        fresh = self.origin()
        self.assertTrue(fresh.value().startswith(b"GET /again HTTP/1.1\r\n"))
        self.answer(fresh, OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)

    def test_stale_retried_once(self):
        """A retried GET whose fresh connection also closes is 502."""
        self.send(get())
        stale = self.origin()
        self.answer(stale, OK)
        self.transport.clear()
        self.send(get(b"/again"))
        stale.loseConnection()
        self.origin().loseConnection()
        self.assertError(502, "closed the connection before answering")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_post_not_retried(self):
        """A POST on a stale pooled connection is not retried: 502."""
        self.send(get())
        stale = self.origin()
        self.answer(stale, OK)
        self.transport.clear()
        self.send(get(method=b"POST", headers=b"Content-Length: 2\r\n") + b"ab")
        stale.loseConnection()
        self.assertError(502, "closed the connection before answering")
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_fresh_not_retried(self):
        """A GET on a new connection that closes before answering is not retried."""
        self.send(get())
        self.origin().loseConnection()
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_closed_at_stop(self):
        """Stopping the factory closes the pooled connections."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        self.factory.stopFactory()
        self.assertFalse(origin.connected)


class RequestBodyTests(ProxyTestCase):
    """
    Request bodies are streamed upstream as they arrive.
    """

    def test_content_length(self):
        """A Content-Length body is forwarded exactly, with its Content-Length."""
        self.send(get(method=b"POST", headers=b"Content-Length: 11\r\n") + b"hello")
        origin = self.origin()
        self.send(b" world")
        self.assertEqual(origin.value(), b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 11\r\n"
                                         b"Via: 1.1 netproxy\r\n\r\nhello world")

    def test_body_before_connection(self):
        """Body bytes that arrive before the origin accepts are sent once it does."""
        self.send(get(method=b"PUT", headers=b"Content-Length: 4\r\n"))
        self.send(b"da")
        self.send(b"ta")
        self.assertTrue(self.origin().value().endswith(b"\r\n\r\ndata"))

    def test_chunked(self):
        """A chunked body is re-chunked upstream, and the forwarded head says Transfer-Encoding: chunked."""
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n") + b"5;ext=1\r\nhello\r\n")
        origin = self.origin()
        self.send(b"1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n")
        self.assertEqual(origin.value(), b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.1 netproxy\r\n"
                                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n")

    def test_bad_chunk_size(self):
        """An invalid chunk size is 400 and the origin's connection is closed."""
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n"))
        origin = self.origin()
        self.send(b"zz\r\n")
        self.assertError(400, "invalid chunk size")
        self.assertFalse(origin.connected)
        self.assertEqual(len(self.factory.pool), 0)

    def test_bad_chunk_size_before_connection(self):
        """An invalid chunk size sent with the head is 400 once the origin accepts."""
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n") + b"zz\r\n")
        origin = self.origin()
        self.assertError(400, "invalid chunk size")
        self.assertFalse(origin.connected)

    def test_bad_chunk_on_reused_connection(self):
        """An invalid chunk size on a pooled connection is 400 too."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        self.transport.clear()
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n") + b"zz\r\n")
        self.assertError(400, "invalid chunk size")
        self.assertFalse(origin.connected)

    def test_bad_chunk_after_response(self):
        """A bad chunk after the response has started aborts the client instead of appending a page."""
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n"))
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        self.send(b"zz\r\n")
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nab"))
        self.assertTrue(self.transport.disconnected)
        self.assertFalse(origin.connected)

    def test_early_response(self):
        """A response complete before the upload is relayed, then both connections close."""
        self.send(get(method=b"POST", headers=b"Content-Length: 100\r\n") + b"abc")
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertIn((b"Connection", b"close"), split_response(self.transport.value())[1])
        self.assertFalse(self.transport.connected)
        self.assertFalse(origin.connected)

    def test_long_upload(self):
        """An upload that keeps moving for longer than the timeout is not cut with a 504."""
        self.send(get(method=b"POST", headers=b"Content-Length: 4\r\n"))
        origin = self.origin()
        for piece in b"abc":
            self.reactor.advance(20)
            self.send(bytes([piece]))
        self.reactor.advance(20)
        self.send(b"d")
        self.reactor.advance(29)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(1)
        self.assertError(504, "did not answer within 30 seconds")
        self.assertTrue(origin.value().endswith(b"abcd"))


class StallTests(ProxyTestCase):
    """
    --timeout bounds every wait of an exchange, not only the wait for the
    response head: a client that stops mid-upload gets 408, and a response
    that stops mid-body has its client's connection cut.
    """

    def test_upload_stalls(self):
        """A client that stops sending its request body gets 408, and the origin's connection is closed."""
        self.send(get(method=b"POST", headers=b"Content-Length: 10\r\n") + b"half")
        origin = self.origin()
        self.reactor.advance(29)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(1)
        self.assertError(408, "the request body was not received within 30 seconds")
        self.assertFalse(origin.connected)

    def test_response_stalls(self):
        """An origin that stops mid-body has both connections cut after the timeout, with a warning."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        self.reactor.advance(29)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(1)
        self.assertTrue(self.transport.disconnected)
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nhalf"))
        self.assertFalse(origin.connected)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("stalled", warning["log_format"])
        self.assertEqual(warning["peer"], "127.0.0.1:40000")

    def test_slow_response_not_cut(self):
        """A response that keeps moving may take longer than the timeout in all."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        for piece in b"abc":
            self.reactor.advance(20)
            self.answer(origin, bytes([piece]))
        self.reactor.advance(20)
        self.assertTrue(self.transport.connected)
        self.answer(origin, b"d")
        self.assertTrue(self.transport.value().endswith(b"abcd"))
        self.assertTrue(self.transport.connected)
        self.assertEqual(len(self.factory.pool), 1)


class BackPressureTests(ProxyTestCase):
    """
    Each transport is registered as the streaming producer of the other
    while a body flows, so a slow reader pauses the writer.
    """

    def test_paused_while_connecting(self):
        """The client is paused until the origin accepts."""
        self.send(get(method=b"POST", headers=b"Content-Length: 4\r\n"))
        self.assertEqual(self.transport.producerState, "paused")

    def test_upload(self):
        """During an upload the client's transport is the upstream transport's streaming producer."""
        self.send(get(method=b"POST", headers=b"Content-Length: 4\r\n"))
        origin = self.origin()
        self.assertIs(origin.producer, self.transport)
        self.assertTrue(origin.streaming)
        self.assertEqual(self.transport.producerState, "producing")
        origin.producer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")

    def test_upload_done(self):
        """Once the upload is complete the client is unregistered, and resumed at the end of the response."""
        self.send(get(method=b"POST", headers=b"Content-Length: 4\r\n"))
        origin = self.origin()
        self.transport.pauseProducing()  # as the origin's back-pressure may have done
        self.send(b"data")
        self.assertIsNone(origin.producer)
        self.answer(origin, OK)
        self.assertEqual(self.transport.producerState, "producing")

    def test_read_ahead_bounded(self):
        """Pipelined bytes past MAX_READ_AHEAD pause the client until the response in flight ends."""
        self.send(get())
        origin = self.origin()
        self.assertEqual(self.transport.producerState, "producing")
        self.send(b"x" * (MAX_READ_AHEAD + 1))
        self.assertEqual(self.transport.producerState, "paused")
        self.answer(origin, OK)
        self.assertEqual(self.transport.producerState, "producing")

    def test_download(self):
        """During a response the upstream transport is the client transport's streaming producer."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nda")
        self.assertIs(self.transport.producer, origin)
        self.assertTrue(self.transport.streaming)
        self.transport.producer.pauseProducing()
        self.assertEqual(origin.producerState, "paused")

    def test_download_done(self):
        """Once the response is complete the upstream transport is unregistered."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, OK)
        self.assertIsNone(self.transport.producer)

    def test_error_unregisters(self):
        """An error page unregisters the producer, so the closing transport is not held open."""
        self.send(get(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n"))
        origin = self.origin()
        self.send(b"zz\r\n")
        self.assertIsNone(origin.producer)
        self.assertIsNone(self.transport.producer)


class LocalDestinationTests(LocalDestinationTestCase):
    """
    Requests to this host, however it is spelled (names that resolve there included), are refused
    unless local destinations are allowed, and matched by a loopback rule either way.
    """

    def test_refused_by_default(self):
        """Every spelling of this host gets 403 naming the reason and --allow-local, without a connection."""
        factory = make_factory(self.reactor)
        factory.local = LocalDestinations(lambda: [])
        for host in THIS_HOST:
            body = self.refused(factory, b"GET http://%s:8080/ HTTP/1.1\r\n\r\n" % (host.encode(),))
            self.assertIn(f"destination {host.lower()}:8080 is this host: ", body)
            self.assertIn("(--allow-local allows it)", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_own_address_refused(self):
        """One of this host's interface addresses is refused, and so is a name that resolves to it."""
        factory = make_factory(self.reactor)
        factory.local = LocalDestinations(lambda: [ip_address("192.0.2.80")])
        for host in (b"192.0.2.80", b"[::ffff:192.0.2.80]", b"elsewhere.test"):
            body = self.refused(factory, b"GET http://%s/ HTTP/1.1\r\n\r\n" % (host,))
            self.assertIn("one of this host's own interface addresses", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_link_local_refused(self):
        """The cloud metadata service's link-local address is refused."""
        factory = make_factory(self.reactor)
        factory.local = LocalDestinations(lambda: [])
        body = self.refused(factory, b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n")
        self.assertIn("is on this host's link: 169.254.169.254 is a link-local address", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_loopback_rule_with_local_allowed(self):
        """With local destinations allowed, a 127.0.0.0/8 rule still matches every spelling of this host."""
        factory = make_factory(self.reactor, "127.0.0.0/8")
        for host in THIS_HOST:
            body = self.refused(factory, b"GET http://%s:8080/ HTTP/1.1\r\n\r\n" % (host.encode(),))
            self.assertIn("blocked", body)
            self.assertIn("127.0.0.0/8", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_elsewhere_forwarded(self):
        """A destination elsewhere is connected to, by the address its name resolves to."""
        factory = make_factory(self.reactor, "127.0.0.0/8")
        factory.local = LocalDestinations(lambda: [])
        protocol, transport = connect(factory, CLIENT)
        protocol.dataReceived(b"GET http://elsewhere.test/ HTTP/1.1\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.80", 80))
