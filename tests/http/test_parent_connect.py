"""
Tests for L{netproxy.http.parent_connect}: connecting to the parents with
failover, and through a SOCKS5 parent: requests in origin-form over its
tunnel, connections pooled per parent and origin, CONNECTs as SOCKS
CONNECTs, reply codes answered 502 or 504, and the parent marked down only
for its own failures.
"""

from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet
from netproxy.errors import HTTPError
from netproxy.http.parent_connect import connect_parent, socks_error
from netproxy.http.parents import Parents, parse_parent
from netproxy.http.tunnel import ESTABLISHED
from netproxy.socks_client import SocksFailure, connect_request
from netproxy.testing import complete_connection, connect, fail_connection
from tests.http_helpers import CLIENT, ProxyTestCase, get

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
SUCCESS = b"\x05\x00\x00\x01\x0a\x00\x00\x09\x04\x38"


def parents(*names, clock=None):
    """
    :returns: L{Parents} for C{host:port} C{names}, on C{clock}.
    """
    return Parents([parse_parent(f"http://{name}") for name in names], RuleSet(), clock or Clock())


class ConnectTests(SynchronousTestCase):
    """
    L{connect_parent} tries the candidates in turn.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.parents = parents("10.0.0.1:3128", "10.0.0.2:3128", clock=self.reactor)
        self.made = []
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def factory(self, parent):
        self.made.append(parent.name)
        return Factory.forProtocol(Protocol)

    def connect(self):
        return connect_parent(self.parents, self.parents.parents, self.reactor, 5, self.factory)

    def test_first(self):
        """The first candidate that accepts is connected, with the connect timeout."""
        connecting = self.connect()
        self.assertEqual(self.reactor.tcpClients[0][:2] + (self.reactor.tcpClients[0][3],), ("10.0.0.1", 3128, 5))
        wrapper, _ = complete_connection(self.reactor)
        self.assertIs(self.successResultOf(connecting), wrapper._wrappedProtocol)

    def test_failover(self):
        """A refused parent is marked down and the next one tried."""
        connecting = self.connect()
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(self.reactor.tcpClients[1][:2], ("10.0.0.2", 3128))
        complete_connection(self.reactor)
        self.successResultOf(connecting)
        self.assertEqual(self.made, ["10.0.0.1:3128", "10.0.0.2:3128"])
        self.assertFalse(self.parents.parents[0].state.available(self.reactor.seconds()))

    def test_all_fail(self):
        """When every parent fails, a 502 names each and why."""
        connecting = self.connect()
        fail_connection(self.reactor, ConnectionRefusedError())
        fail_connection(self.reactor, TimeoutError())
        error = self.failureResultOf(connecting, HTTPError).value
        self.assertEqual(error.status, 502)
        self.assertEqual(str(error), "could not connect to any parent proxy: 10.0.0.1:3128: connection refused; "
                                     "10.0.0.2:3128: timed out")

    def test_all_time_out(self):
        """When every parent timed out, the answer is 504."""
        connecting = self.connect()
        fail_connection(self.reactor, TimeoutError())
        fail_connection(self.reactor, TimeoutError())
        self.assertEqual(self.failureResultOf(connecting, HTTPError).value.status, 504)

    def test_one_parent(self):
        """With one parent, the error names it."""
        connecting = connect_parent(self.parents, self.parents.parents[:1], self.reactor, 5, self.factory)
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(str(self.failureResultOf(connecting, HTTPError).value),
                         "could not connect to parent proxy 10.0.0.1:3128: connection refused")

    def test_cancel(self):
        """Cancelling stops the attempt in progress, and tries no other parent nor marks one down."""
        connecting = self.connect()
        connecting.cancel()
        self.failureResultOf(connecting)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(all(parent.state.available(0) for parent in self.parents.parents))


class SocksErrorTests(SynchronousTestCase):
    """
    L{socks_error} answers a SOCKS5 parent's failure, and marks the parent.
    """

    def setUp(self):
        self.parents = Parents([parse_parent("socks5://10.0.0.9:1080")], RuleSet(), Clock())
        self.parent = self.parents.parents[0]

    def test_codes(self):
        """Refused, unreachable and not allowed are 502, TTL expired 504; the parent stays up."""
        for code, status in ((1, 502), (2, 502), (3, 502), (4, 502), (5, 502), (6, 504), (7, 502)):
            error = socks_error(self.parents, self.parent, SocksFailure(f"code {code}", reply=code), "h:80")
            self.assertEqual(error.status, status)
            self.assertIn("parent proxy socks5://10.0.0.9:1080 could not open a tunnel to h:80: code", str(error))
        self.assertIsNone(self.parent.state.retry_at)

    def test_server_fault(self):
        """A failure of the parent itself is a 502 and marks it down."""
        error = socks_error(self.parents, self.parent, SocksFailure("garbage", server_fault=True), "h:80")
        self.assertEqual(error.status, 502)
        self.assertIsNotNone(self.parent.state.retry_at)


class SocksParentTestCase(ProxyTestCase):
    """
    A proxy whose one parent is the SOCKS5 server 10.0.0.9:1080, with the
    login u:p.
    """

    def setUp(self):
        super().setUp()
        self.factory.parents = Parents([parse_parent("socks5://u:p@10.0.0.9:1080")], RuleSet(), self.reactor)
        self.factory.pseudonym = b"netproxy-child"
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    @property
    def down(self):
        return self.factory.parents.parents[0].state.retry_at is not None

    def negotiate(self, request, host=b"example.com", port=80, reply=SUCCESS, transport=None):
        """
        Send C{request}; let the parent accept, log in and answer the
        CONNECT for C{host:port} with C{reply}.

        :returns: the parent's transport, cleared.
        """
        self.send(request, transport)
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("10.0.0.9", 1080))
        parent = self.origin()
        self.assertEqual(parent.value(), b"\x05\x02\x00\x02")
        parent.clear()
        parent.protocol.dataReceived(b"\x05\x02")
        self.assertEqual(parent.value(), b"\x01\x01u\x01p")
        parent.clear()
        parent.protocol.dataReceived(b"\x01\x00")
        self.assertEqual(parent.value(), connect_request(host.decode(), port))
        parent.clear()
        parent.protocol.dataReceived(reply)
        return parent


class SocksForwardTests(SocksParentTestCase):
    """
    Requests through a SOCKS5 parent go to the origin, in origin-form.
    """

    def test_origin_form(self):
        """The origin gets the request as it would directly, with our Via; its answer is relayed."""
        parent = self.negotiate(b"GET http://example.com/a HTTP/1.1\r\n\r\n")
        self.assertEqual(parent.value(), b"GET /a HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 netproxy-child\r\n\r\n")
        self.answer(parent, ANSWER)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nhi"))
        self.assertFalse(self.down)

    def test_pooled_per_origin(self):
        """A tunnel is reused for its origin only: another origin gets a tunnel of its own."""
        parent = self.negotiate(b"GET http://example.com/a HTTP/1.1\r\n\r\n")
        self.answer(parent, ANSWER)
        parent.clear()
        _, second = connect(self.factory, CLIENT)
        self.send(b"GET http://example.com/b HTTP/1.1\r\n\r\n", second)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(parent.value().startswith(b"GET /b HTTP/1.1\r\n"))
        self.answer(parent, ANSWER)
        _, third = connect(self.factory, CLIENT)
        self.negotiate(b"GET http://other.example:8080/ HTTP/1.1\r\n\r\n", b"other.example", 8080,
                       transport=third)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_refused_by_origin(self):
        """Reply 5 (the origin refused) is a 502 naming it; the parent stays up."""
        self.negotiate(get(b"/"), b"127.0.0.1", 8000, reply=b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
        self.assertError(502, "connection refused")
        self.assertFalse(self.down)

    def test_ttl_expired(self):
        """Reply 6 (TTL expired) is a 504."""
        self.negotiate(get(b"/"), b"127.0.0.1", 8000, reply=b"\x05\x06")
        self.assertError(504, "TTL expired")
        self.assertFalse(self.down)

    def test_garbage(self):
        """A parent answering garbage to CONNECT is a 502 and marked down, and the proxy serves on."""
        self.negotiate(get(b"/"), b"127.0.0.1", 8000, reply=b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertError(502, "version 72")
        self.assertTrue(self.down)
        self.assertTrue(any(event.get("log_format", "").startswith("parent proxy {parent} failed") for event in self.events))
        _, transport = connect(self.factory, CLIENT)
        parent = self.negotiate(get(b"/"), b"127.0.0.1", 8000, transport=transport)
        self.answer(parent, ANSWER)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertFalse(self.down)

    def test_parent_refuses_connection(self):
        """A SOCKS5 parent that refuses the TCP connection is a 502 and marked down."""
        self.send(get(b"/"))
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertError(502, "could not connect to parent proxy socks5://10.0.0.9:1080: connection refused")
        self.assertTrue(self.down)


class SocksTunnelTests(SocksParentTestCase):
    """
    A CONNECT through a SOCKS5 parent is the parent's SOCKS CONNECT.
    """

    def test_tunnel(self):
        """Once the parent opens the tunnel, the client gets our 200 and bytes go both ways."""
        parent = self.negotiate(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                                port=443, reply=SUCCESS + b"early")
        self.assertEqual(self.transport.value(), ESTABLISHED + b"early")
        self.send(b"ping")
        self.assertEqual(parent.value(), b"ping")
        self.assertFalse(self.down)

    def test_refused(self):
        """A failure code is a 502 naming the parent and the code."""
        self.negotiate(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", port=443,
                       reply=b"\x05\x02")
        self.assertError(502, "connection not allowed by ruleset")
        self.assertFalse(self.down)

    def test_truncated(self):
        """A parent closing in the middle of its reply is a 502 and marked down."""
        parent = self.negotiate(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", port=443,
                                reply=b"\x05\x00\x00\x03\x40abc")
        parent.loseConnection()
        self.assertError(502, "closed the connection before answering CONNECT")
        self.assertTrue(self.down)
