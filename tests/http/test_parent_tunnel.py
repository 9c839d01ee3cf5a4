"""
Tests for L{netproxy.http.parent_tunnel}: a CONNECT through the HTTP proxy
with a parent goes through the parent's CONNECT (with its credentials and
our Via); once the parent answers 2xx the tunnel carries bytes both ways,
and a parent that refuses, misbehaves or says nothing gives the client a
502 or 504.
"""

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.parents import Parents, parse_parent
from netproxy.http.tunnel import ESTABLISHED
from netproxy.testing import complete_connection, connect, fail_connection
from netproxy.this_host import LocalDestinations
from tests.http_helpers import CLIENT, make_factory

CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic eDp5\r\n\r\n"
OK = b"HTTP/1.1 200 Connection established\r\nX-Parent: 1\r\n\r\n"


class ParentTunnelTestCase(SynchronousTestCase):
    """
    A proxy with one parent, 10.0.0.1:3128 with credentials u:p, and
    C{--direct} for 127.0.0.1.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor)
        self.factory.parents = Parents([parse_parent("http://u:p@10.0.0.1:3128")], RuleSet([parse_rule("127.0.0.1")]),
                                       self.reactor)
        self.factory.pseudonym = b"netproxy-child"
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def parent(self, request=CONNECT):
        """
        Send C{request} and let the parent accept.

        :returns: the parent's transport.
        """
        self.protocol.dataReceived(request)
        return complete_connection(self.reactor)[1]

    def assertRefused(self, status, cause):
        """
        The client got a C{status} page naming C{cause}, and was closed.
        """
        data = self.transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 %d " % (status,)), data)
        self.assertIn(cause, data)
        self.assertFalse(self.transport.connected)

    @property
    def down(self):
        return self.factory.parents.parents[0].state.retry_at is not None


class HandshakeTests(ParentTunnelTestCase):
    """
    The parent is asked for the tunnel, and then carries it.
    """

    def test_asks_parent(self):
        """The parent gets CONNECT host:port with its credentials (not the client's) and our Via."""
        parent = self.parent()
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.1", 3128))
        self.assertEqual(parent.value(), b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                                         b"Proxy-Authorization: Basic dTpw\r\nVia: 1.1 netproxy-child\r\n\r\n")
        self.assertEqual(self.transport.value(), b"")

    def test_established(self):
        """Once the parent says 200, the client gets our 200 (not the parent's head)."""
        parent = self.parent()
        parent.protocol.dataReceived(OK)
        self.assertEqual(self.transport.value(), ESTABLISHED)
        self.assertEqual((self.transport.producer, parent.producer), (parent, self.transport))
        self.assertEqual(self.transport.producerState, "producing")

    def test_answer_brings_back(self):
        """A down parent whose wait is over is up again once it answers a CONNECT."""
        parents = self.factory.parents
        parents.failed(parents.parents[0], "connection refused")
        self.reactor.advance(1)
        parent = self.parent()
        self.assertTrue(self.down)
        parent.protocol.dataReceived(OK)
        self.assertFalse(self.down)

    def test_bytes_both_ways(self):
        """Bytes after the parent's answer, and all bytes after, go both ways unchanged; early client bytes too."""
        parent = self.parent(CONNECT + b"early")
        parent.clear()
        parent.protocol.dataReceived(OK + b"banner")
        self.assertEqual(self.transport.value(), ESTABLISHED + b"banner")
        self.protocol.dataReceived(b"\x16\x03\x01")
        parent.protocol.dataReceived(b"\x16\x03\x03")
        self.assertEqual(parent.value(), b"early\x16\x03\x01")
        self.assertEqual(self.transport.value(), ESTABLISHED + b"banner\x16\x03\x03")

    def test_interim_then_ok(self):
        """An interim answer before the 200 is skipped; an answer split in pieces is read whole."""
        parent = self.parent()
        for piece in (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", b"00 OK\r\n", b"\r\nx"):
            parent.protocol.dataReceived(piece)
        self.assertEqual(self.transport.value(), ESTABLISHED + b"x")

    def test_closes_both_ways(self):
        """The parent closing closes the client; the client closing closes the parent."""
        parent = self.parent()
        parent.protocol.dataReceived(OK)
        parent.loseConnection()
        self.assertFalse(self.transport.connected)
        self.setUp()
        parent = self.parent()
        parent.protocol.dataReceived(OK)
        self.transport.loseConnection()
        self.assertFalse(parent.connected)

    def test_direct(self):
        """A CONNECT to a --direct destination goes straight there."""
        self.protocol.dataReceived(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 443))
        complete_connection(self.reactor)
        self.assertEqual(self.transport.value(), ESTABLISHED)

    def test_port_rule_still_applies(self):
        """--connect-port still limits the ports a tunnel may reach."""
        self.protocol.dataReceived(b"CONNECT example.com:25 HTTP/1.1\r\n\r\n")
        self.assertRefused(403, b"CONNECT to port 25 is not allowed")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_local_literal(self):
        """A local address is refused before any parent is asked."""
        self.factory.local = LocalDestinations(lambda: [])
        self.protocol.dataReceived(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
        self.assertRefused(403, b"is this host")
        self.assertEqual(self.reactor.tcpClients, [])


class FailureTests(ParentTunnelTestCase):
    """
    A parent that does not open the tunnel gives the client an error page.
    """

    def test_refused_by_parent(self):
        """A non-2xx from the parent is a 502 naming the parent and its answer; the parent is not marked down."""
        parent = self.parent()
        parent.protocol.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        self.assertRefused(502, b"parent proxy 10.0.0.1:3128 refused CONNECT example.com:443: 407 Proxy "
                                b"Authentication Required")
        self.assertFalse(parent.connected)
        self.assertFalse(self.down)

    def test_garbage(self):
        """An unreadable answer is a 502, and the parent is marked down."""
        parent = self.parent()
        parent.protocol.dataReceived(b"\x00\x01garbage\r\n\r\n")
        self.assertRefused(502, b"parent proxy 10.0.0.1:3128 sent an unreadable answer to CONNECT")
        self.assertTrue(self.down)
        self.assertFalse(parent.connected)

    def test_huge_answer(self):
        """An answer head past the size limit is a 502, not a growing buffer."""
        parent = self.parent()
        parent.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 200000)
        self.assertRefused(502, b"unreadable answer")

    def test_closed_before_answer(self):
        """A parent that closes before answering is a 502, and is marked down."""
        parent = self.parent()
        parent.loseConnection()
        self.assertRefused(502, b"parent proxy 10.0.0.1:3128 closed the connection before answering CONNECT")
        self.assertTrue(self.down)

    def test_silent(self):
        """A parent that does not answer within --timeout is a 504, closed, and not marked down."""
        parent = self.parent()
        self.reactor.advance(30)
        self.assertRefused(504, b"parent proxy 10.0.0.1:3128 did not answer CONNECT within 30 seconds")
        self.assertFalse(parent.connected)
        self.assertFalse(self.down)

    def test_unreachable(self):
        """A parent refusing the connection is a 502 naming it."""
        self.protocol.dataReceived(CONNECT)
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertRefused(502, b"could not connect to parent proxy 10.0.0.1:3128: connection refused")
        self.assertTrue(self.down)

    def test_client_leaves_during_handshake(self):
        """A client that leaves while the parent is being asked closes the parent's connection, timer and all."""
        parent = self.parent()
        self.transport.loseConnection()
        self.assertFalse(parent.connected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        parent.protocol.dataReceived(OK)
        self.assertFalse(self.down)

    def test_client_leaves_while_connecting(self):
        """A client that leaves before the parent accepts cancels the attempt."""
        self.protocol.dataReceived(CONNECT)
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertFalse(self.down)
