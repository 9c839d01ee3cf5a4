"""
Tests for L{netproxy.http.proxy}: client connections admitted by address,
requests read one after another, refusals answered with a short page, and
each request finished in the access log and the main log.
"""

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver, StringTransportWithDisconnection
from twisted.logger import LogLevel, globalLogPublisher

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.proxy import ProxyFactory
from netproxy.rate_limit import RateLimiter
from netproxy.testing import connect, fail_connection
from tests.http_helpers import CLIENT, OK, OK_FORWARDED, ProxyTestCase, get, split_response


class NoDelayTransport(StringTransportWithDisconnection):
    """
    A transport that records whether Nagle's algorithm was turned off.
    """

    no_delay = False

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


class NoDelayTests(ProxyTestCase):
    """
    Both of the proxy's connections send without Nagle's delay, which would
    hold the last segment of every response until the peer's delayed ACK.
    """

    def test_client(self):
        """The client's connection has TCP_NODELAY set."""
        _, transport = connect(self.factory, CLIENT, NoDelayTransport(peerAddress=CLIENT))
        self.assertTrue(transport.no_delay)

    def test_upstream(self):
        """The origin's connection has TCP_NODELAY set."""
        self.send(get())
        host, port, factory = self.reactor.tcpClients[0][:3]
        _, transport = connect(factory, IPv4Address("TCP", host, port), NoDelayTransport())
        self.assertTrue(transport.no_delay)


class RequestErrorTests(ProxyTestCase):
    """
    Requests the proxy refuses are answered with a short page naming the
    cause, the connection is closed, and no upstream connection is made.
    """

    def assertRefused(self, request, status, cause):
        """
        C{request} gets a C{status} page naming C{cause}, without any
        upstream connection attempt.
        """
        self.send(request)
        self.assertError(status, cause)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_malformed_head(self):
        """A malformed request line is 400."""
        self.assertRefused(b"HELLO THERE\r\n\r\n", 400, "malformed request line")

    def test_origin_form(self):
        """A request in origin-form is not a proxy request: 400."""
        self.assertRefused(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400,
                           "not a proxy request: /index.html")

    def test_https_url(self):
        """An https URL is 400: it needs CONNECT."""
        self.assertRefused(b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n", 400, "https URLs go through CONNECT")

    def test_content_length_and_chunked(self):
        """Content-Length with Transfer-Encoding is a smuggling attempt: 400."""
        self.assertRefused(get(method=b"POST", headers=b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
                           400, "both Transfer-Encoding and Content-Length")

    def test_duplicate_content_length(self):
        """Two Content-Length fields are 400, even when equal."""
        self.assertRefused(get(method=b"POST", headers=b"Content-Length: 5\r\nContent-Length: 5\r\n"),
                           400, "duplicate Content-Length")

    def test_invalid_content_length(self):
        """A Content-Length that is not a number is 400."""
        self.assertRefused(get(method=b"POST", headers=b"Content-Length: -5\r\n"), 400, "invalid Content-Length")

    def test_unknown_transfer_coding(self):
        """A transfer coding the proxy does not decode, before chunked, is 501 (RFC 9112 6.1), logged as a warning."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertRefused(get(method=b"POST", headers=b"Transfer-Encoding: gzip, chunked\r\n"),
                           501, "transfer codings other than chunked are not supported")
        self.assertEqual([e["status"] for e in events if e["log_level"] == LogLevel.warn], [501])
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])

    def test_chunked_not_last(self):
        """A request whose codings do not end with chunked has no knowable end: 400 (RFC 9112 6.3)."""
        self.assertRefused(get(method=b"POST", headers=b"Transfer-Encoding: chunked, gzip\r\n"),
                           400, "does not end with chunked")

    def test_obs_fold(self):
        """Obsolete line folding in the head is 400."""
        self.assertRefused(get(headers=b"X-A: 1\r\n  continued\r\n"), 400, "obsolete line folding")

    def test_bare_cr(self):
        """A bare CR in the head is 400."""
        self.assertRefused(get(headers=b"X-A: 1\rX-B: 2\r\n"), 400, "bare CR in message head")

    def test_unsupported_version(self):
        """HTTP/2.0 or HTTP/1.2 in a request line is 505, the client's doing: a warning, not an error."""
        for version in (b"2.0", b"1.2"):
            events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
            _, transport = connect(self.factory, CLIENT)
            self.send(b"GET http://127.0.0.1:8000/ HTTP/%s\r\n\r\n" % (version,), transport)
            self.assertError(505, "HTTP version not supported", transport)
            [event] = [e for e in events if e.get("status") == 505]
            self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_tls_on_plain_port(self):
        """A TLS ClientHello is 400 at once, not 408 after --timeout: no request line starts so."""
        hello = bytes.fromhex("160301020001000200") + b"\x03\x03" + b"\x00" * 20
        for first in (hello[:1], hello):
            _, transport = connect(self.factory, CLIENT)
            self.send(first, transport)
            self.assertError(400, "not an HTTP request", transport)

    def test_binary_after_method_start(self):
        """Bytes that cannot be in a method are 400 as soon as they come, even after a few that can."""
        self.send(b"GE")
        self.assertEqual(self.transport.value(), b"")
        self.send(b"\x00\xff")
        self.assertError(400, "not an HTTP request")

    def test_line_ends_in_method(self):
        """A request line that ends before its method does is 400 at once."""
        self.send(b"\r\nHELLO\r\n")
        self.assertError(400, "malformed request line")

    def test_empty_method(self):
        """A request line starting with a space is 400 at once."""
        self.send(b" GET")
        self.assertError(400, "not an HTTP request")

    def test_slow_method_not_refused(self):
        """A valid method sent a byte at a time is no reason to refuse: the request goes through."""
        for byte in get():
            self.send(bytes([byte]))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.transport.value(), b"")

    def test_huge_head(self):
        """A head larger than 64 KiB is 431 as soon as the limit is passed."""
        self.assertRefused(get()[:-2] + b"X-Big: " + b"a" * 70000, 431, "request head larger than 65536 bytes")

    def test_loop(self):
        """A request whose Via already names netproxy is a forwarding loop: 403."""
        self.assertRefused(get(headers=b"Via: 1.0 other, 1.1 netproxy\r\n"), 403, "forwarding loop")

    def test_blocked_destination(self):
        """A destination matching a --block rule is 403 naming the rule."""
        self.assertRefused(b"GET http://127.0.0.66/ HTTP/1.1\r\n\r\n", 403,
                           "destination 127.0.0.66 is blocked by rule 127.0.0.66")

    def test_blocked_port(self):
        """A port rule blocks that port on any host."""
        self.assertRefused(b"GET http://127.0.0.1:25/ HTTP/1.1\r\n\r\n", 403, "destination 127.0.0.1:25 is blocked")

    def test_client_not_allowed(self):
        """A client outside --allow is answered 403 at once and closed, and logged."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        _, transport = connect(self.factory, IPv4Address("TCP", "10.0.0.1", 40000))
        self.assertError(403, "client 10.0.0.1 is not allowed to use this proxy", transport)
        [event] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(event["peer"], "10.0.0.1:40000")

    def test_client_not_allowed_ignored(self):
        """What a refused client sends afterwards is ignored."""
        _, transport = connect(self.factory, IPv4Address("TCP", "10.0.0.1", 40000))
        transport.clear()
        self.send(get(), transport)
        self.assertEqual((transport.value(), self.reactor.tcpClients), (b"", []))

    def test_half_request_times_out(self):
        """A client that sends half a request and idles gets 408 after the timeout."""
        self.send(get()[:20])
        self.reactor.advance(29)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(1)
        self.assertError(408, "the request was not received in time")

    def test_request_timeout_not_idle_timeout(self):
        """The time to send a request head is the request timeout, even with a longer idle timeout."""
        self.factory.idle_timeout = 300
        _, transport = connect(self.factory, CLIENT)
        self.send(get()[:20], transport)
        self.reactor.advance(30)
        self.assertError(408, "the request was not received in time", transport)

    def test_idle_mid_head(self):
        """A client idle mid-head for a shorter idle timeout gets 408 then."""
        self.factory.idle_timeout = 5
        _, transport = connect(self.factory, CLIENT)
        self.send(get()[:20], transport)
        self.reactor.advance(5)
        self.assertError(408, "the request was not received in time", transport)

    def test_trickling_head(self):
        """A head sent a byte at a time still has to be complete within the timeout of its first byte."""
        for index in range(3):
            self.send(get()[index:index + 1])
            self.reactor.advance(10)
        self.assertError(408, "the request was not received in time")

    def test_head_timer_stops(self):
        """A head completed just in time is not answered 408 while its response is awaited."""
        request = get()
        self.send(request[:5])
        self.reactor.advance(29)
        self.send(request[5:])
        origin = self.origin()
        self.reactor.advance(2)
        self.assertEqual(self.transport.value(), b"")
        self.answer(origin, OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)

    def test_idle_closed_quietly(self):
        """A client that sends nothing is closed after the timeout without a page."""
        self.reactor.advance(30)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.connected)


class AccessLogTests(ProxyTestCase):
    """
    Every request the proxy reads is one access event, whatever became of
    it: refused, failed upstream, cut short, or abandoned by its client.
    """

    def setUp(self):
        super().setUp()
        self.events = []
        self.factory.access_log.add_observer(self.events.append)

    def assertLogged(self, status, size, url=b"http://127.0.0.1:8000/"):
        [event] = self.events
        self.assertEqual((event["url"], event["status"], event["size"]), (url, status, size))

    def test_refused(self):
        """A request refused by rule is logged with its status and the size of the error page."""
        self.send(b"GET http://127.0.0.66/ HTTP/1.1\r\n\r\n")
        body = split_response(self.transport.value())[2]
        self.assertLogged(403, len(body), url=b"http://127.0.0.66/")

    def test_upstream_failed(self):
        """A request whose origin refuses the connection is logged as 502."""
        self.send(get())
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertLogged(502, len(split_response(self.transport.value())[2]))

    def test_cut_short(self):
        """A response cut short is logged with its status and the body bytes sent."""
        self.send(get())
        origin = self.origin()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        origin.loseConnection()
        self.assertLogged(200, 4)

    def test_client_gone(self):
        """A client that leaves before its response is logged without a status."""
        self.send(get())
        self.origin()
        self.transport.loseConnection()
        self.assertLogged(None, 0)

    def test_malformed_not_logged(self):
        """A head that cannot be parsed has no request to log (the main log has it)."""
        self.send(b"nonsense\r\n\r\n")
        self.assertEqual(self.events, [])


class LogLevelTests(ProxyTestCase):
    """
    Refusals go to the main log as warnings when the client is at fault,
    and as errors when the origin is unavailable.
    """

    def levels(self):
        return [(e["log_level"], e["status"]) for e in self.events if "status" in e]

    def setUp(self):
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_bad_request(self):
        """A malformed request is a warning naming the client."""
        self.send(b"nonsense\r\n\r\n")
        self.assertEqual(self.levels(), [(LogLevel.warn, 400)])
        self.assertEqual(self.events[-1]["peer"], "127.0.0.1:40000")

    def test_unavailable_origin(self):
        """An origin that refuses the connection is an error."""
        self.send(get())
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(self.levels(), [(LogLevel.error, 502)])


class UnixClientTests(ProxyTestCase):
    """
    Clients of a Unix socket are the client C{unix}: admitted by the rule
    C{unix}, logged as C{unix}.
    """

    def test_admitted_by_unix_rule(self):
        """A Unix-socket client is served when --allow holds unix, and logged as unix."""
        factory = ProxyFactory(self.reactor, allow=RuleSet([parse_rule("127.0.0.0/8"), parse_rule("unix")]),
                               rules=RuleSet(), connect_ports={443}, timeout=30, connect_timeout=10)
        events = []
        factory.access_log.add_observer(events.append)
        _, transport = connect(factory, UNIXAddress(None))
        self.send(get(b"/x"), transport)
        self.answer(self.origin(), OK)
        self.assertEqual(transport.value(), OK_FORWARDED)
        [event] = events
        self.assertEqual((event["client"], event["status"]), ("unix", 200))

    def test_refused_without_unix_rule(self):
        """Without the unix rule, a Unix-socket client gets 403 naming it as unix."""
        _, transport = connect(self.factory, UNIXAddress(b"/tmp/client.sock"))
        self.assertError(403, "client unix is not allowed to use this proxy", transport)


class RateLimitTests(ProxyTestCase):
    """
    C{--max-requests-rate} and C{--rate-limit} on the proxy's connections.
    """

    def limit(self, **rates):
        """Give the proxy a L{RateLimiter} with C{rates}; clients connect anew."""
        self.factory.rate_limiter = RateLimiter(self.reactor, **rates)
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def test_too_many_requests(self):
        """
        Past its rate a client's request is answered 429 with Retry-After and a page naming the cause, logged, and
        the connection closed; another address is still served.
        """
        self.limit(request_rate=0.5)
        events = []
        self.factory.access_log.add_observer(events.append)
        self.send(get())
        self.assertEqual(len(self.reactor.tcpClients), 1)
        _, again = connect(self.factory, CLIENT)
        self.send(get(b"/second"), again)
        self.assertError(429, "too many requests from 127.0.0.1: at most 0.5 a second (--max-requests-rate)", again)
        self.assertIn((b"Retry-After", b"2"), split_response(again.value())[1])
        self.assertEqual([(event["url"], event["status"]) for event in events],
                         [(b"http://127.0.0.1:8000/second", 429)])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        _, other = connect(self.factory, IPv4Address("TCP", "127.0.0.2", 40000))
        self.send(get(), other)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.reactor.advance(2)
        _, later = connect(self.factory, CLIENT)
        self.send(get(), later)
        self.assertEqual(len(self.reactor.tcpClients), 3)

    def test_download_paused(self):
        """
        A download past the client's byte rate pauses the origin's transport and the client's until the bucket has
        refilled; nothing is held back meanwhile.
        """
        self.limit(byte_rate=64 * 1024)  # a 16 KiB burst
        self.send(get())
        origin = self.origin()
        body = b"x" * (32 * 1024)
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (2 * len(body), body))
        self.assertTrue(self.transport.value().endswith(body))
        self.assertEqual((origin.producerState, self.transport.producerState), ("paused", "paused"))
        # 16 KiB past the burst, and the request and the response's head.
        self.reactor.advance(0.24)
        self.assertEqual((origin.producerState, self.transport.producerState), ("paused", "paused"))
        self.reactor.advance(0.02)
        self.assertEqual((origin.producerState, self.transport.producerState), ("producing", "producing"))
        self.answer(origin, body)
        self.assertTrue(self.transport.value().endswith(body + body))
        self.assertEqual(self.factory.rate_limiter.throttled_bytes, 2 * len(body))

    def test_tunnel_paused(self):
        """Bytes through a CONNECT tunnel count too: past the rate, both ends of the tunnel are paused."""
        self.limit(byte_rate=64 * 1024)
        self.send(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
        destination = self.origin()
        destination.protocol.dataReceived(b"x" * (32 * 1024))
        self.assertEqual((destination.producerState, self.transport.producerState), ("paused", "paused"))
        self.reactor.advance(0.26)
        self.assertEqual((destination.producerState, self.transport.producerState), ("producing", "producing"))
        self.send(b"y" * (32 * 1024))
        self.assertEqual(destination.value(), b"y" * (32 * 1024))
        self.assertEqual((destination.producerState, self.transport.producerState), ("paused", "paused"))

    def test_connections_share(self):
        """Every connection of a client is paused when together they pass its rate."""
        self.limit(byte_rate=64 * 1024)
        _, second = connect(self.factory, CLIENT)
        self.send(b"x" * 4096 + b"\r\n")  # a malformed head: read, refused, counted
        self.send(b"GET http://127.0.0.1:8000/ HTTP/1.1\r\nX: " + b"y" * (16 * 1024), second)
        self.assertEqual(second.producerState, "paused")
        self.assertIn("127.0.0.1", self.factory.rate_limiter.clients)

    def test_closed_connections_leave(self):
        """A client's limits are dropped once its connections are closed and its buckets full."""
        self.limit(byte_rate=64 * 1024, request_rate=10)
        self.send(get())
        self.transport.loseConnection()
        self.reactor.advance(1)
        self.assertEqual(self.factory.rate_limiter.clients, {})
