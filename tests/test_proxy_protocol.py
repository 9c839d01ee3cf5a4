"""
Tests for L{netproxy.proxy_protocol}: the C{haproxy:} listeners that serve
each connection as one from the client its PROXY header names.
"""

import socket
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from netproxy.connections import TrackedProtocol, TrackingFactory
from netproxy.proxy_protocol import (
    HEADER_TIMEOUT,
    ProxiedEndpoint,
    ProxiedFactory,
    is_proxied,
    server_endpoint,
    unwrapped,
)
from tests.test_proxy_header import SIGNATURE, v2

HAPROXY = IPv4Address("TCP", "127.0.0.1", 40000)


class _Recorder(Protocol):
    def __init__(self):
        self.received = b""
        self.lost = None

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        self.host = self.transport.getHost()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class _HalfCloseable(_Recorder):
    def __init__(self):
        super().__init__()
        self.halves = []

    def readConnectionLost(self):
        self.halves.append("read")

    def writeConnectionLost(self):
        self.halves.append("write")


class _RecordingFactory(Factory):
    protocol = _Recorder

    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.built.append((addr, protocol))
        return protocol


def connect(factory, peer=HAPROXY):
    """
    Connect a transport from C{peer} to a L{ProxiedFactory}.

    :returns: the connection (or L{None} if refused) and its transport.
    """
    connection = factory.buildProtocol(peer)
    transport = StringTransportWithDisconnection(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8081))
    if connection is not None:
        transport.protocol = connection
        connection.makeConnection(transport)
    return connection, transport


class ProxiedConnectionTests(SynchronousTestCase):
    """
    A haproxy: listener builds the role's protocol once the header is read, for the client it names.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.role = _RecordingFactory()
        self.factory = ProxiedFactory(self.role, self.clock)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_client_address(self):
        """The role's factory and protocol see the client and the address it connected to, not HAProxy's."""
        connection, transport = connect(self.factory)
        self.assertEqual(self.role.built, [])
        connection.dataReceived(v2() + b"GET / HTTP/1.1\r\n")
        [(address, protocol)] = self.role.built
        self.assertEqual(address, IPv4Address("TCP", "192.0.2.7", 5555))
        self.assertEqual(protocol.peer, IPv4Address("TCP", "192.0.2.7", 5555))
        self.assertEqual(protocol.host, IPv4Address("TCP", "198.51.100.1", 3128))
        self.assertEqual(protocol.received, b"GET / HTTP/1.1\r\n")
        connection.dataReceived(b"Host: a\r\n")
        self.assertEqual(protocol.received, b"GET / HTTP/1.1\r\nHost: a\r\n")

    def test_writes_reach_the_connection(self):
        """What the role writes, and its closing, go to the real connection; its state is the connection's."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        [(_, protocol)] = self.role.built
        self.assertTrue(protocol.transport.connected)
        self.assertFalse(protocol.transport.disconnecting)
        protocol.transport.write(b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\n")
        protocol.transport.loseConnection()
        self.assertIsNotNone(protocol.lost)
        self.assertFalse(protocol.transport.connected)

    def test_header_in_pieces(self):
        """A header that arrives a byte at a time is read whole."""
        connection, transport = connect(self.factory)
        for index, byte in enumerate(v2() + b"G"):
            connection.dataReceived(bytes([byte]))
        [(address, protocol)] = self.role.built
        self.assertEqual(address.host, "192.0.2.7")
        self.assertEqual(protocol.received, b"G")

    def test_no_header_dropped(self):
        """A peer that sends a request without a header is dropped and logged; the role never sees it."""
        connection, transport = connect(self.factory)
        connection.dataReceived(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(self.role.built, [])
        connection.dataReceived(b"more")
        self.assertEqual(self.role.built, [])
        [event] = self.logged
        self.assertIn("dropping connection from 127.0.0.1:40000 to a haproxy: listener: no PROXY protocol header",
                      formatEvent(event))

    def test_malformed_header_dropped(self):
        """A malformed header after a good signature is dropped too: no address can be made up that way."""
        connection, transport = connect(self.factory)
        connection.dataReceived(b"PROXY TCP4 127.0.0.2 127.0.0.1 x 1\r\nGET")
        self.assertFalse(transport.connected)
        self.assertEqual(self.role.built, [])

    def test_header_timeout(self):
        """A peer that sends no complete header in time is dropped."""
        connection, transport = connect(self.factory)
        connection.dataReceived(SIGNATURE)
        self.clock.advance(HEADER_TIMEOUT - 0.1)
        self.assertTrue(transport.connected)
        self.clock.advance(0.1)
        self.assertFalse(transport.connected)
        self.assertIn("no PROXY protocol header within 10 s", formatEvent(self.logged[0]))
        self.assertEqual(self.role.built, [])

    def test_no_timeout_once_read(self):
        """The header's timeout ends with the header: idle time after it is the role's business."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        self.clock.advance(HEADER_TIMEOUT * 2)
        self.assertTrue(transport.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_health_check(self):
        """HAProxy's health check (a LOCAL header, then close) never reaches the role, and is not logged."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2(command=0x20, family=0, addresses=b""))
        transport.loseConnection()
        self.assertEqual(self.role.built, [])
        self.assertEqual(list(self.logged), [])
        self.assertEqual(self.factory.pending, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_local_with_data(self):
        """A LOCAL connection that sends data is served as HAProxy's own, from its real address."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2(command=0x20, family=0, addresses=b""))
        connection.dataReceived(b"GET /status HTTP/1.1\r\n")
        [(address, protocol)] = self.role.built
        self.assertEqual((address, protocol.peer, protocol.received), (HAPROXY, HAPROXY, b"GET /status HTTP/1.1\r\n"))

    def test_half_close(self):
        """A peer's half-close reaches a role that takes it, and closes the connection of one that does not."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        [(_, protocol)] = self.role.built
        connection.readConnectionLost()
        self.assertFalse(transport.connected)
        half = _HalfCloseable()
        self.role.buildProtocol = lambda addr: half
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        connection.readConnectionLost()
        connection.writeConnectionLost()
        self.assertEqual(half.halves, ["read", "write"])
        self.assertTrue(transport.connected)

    def test_role_refuses(self):
        """When the role's factory refuses the client (a limit), the connection is closed."""
        self.role.buildProtocol = lambda addr: None
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        self.assertFalse(transport.connected)

    def test_connection_lost(self):
        """The role's protocol learns that the connection is lost; a closed pending one is forgotten."""
        connection, transport = connect(self.factory)
        connection.dataReceived(v2())
        [(_, protocol)] = self.role.built
        transport.loseConnection()
        self.assertIsNotNone(protocol.lost)
        pending, transport = connect(self.factory)
        self.assertEqual(self.factory.pending, {pending})
        transport.loseConnection()
        self.assertEqual(self.factory.pending, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pending_bounded(self):
        """Past max_pending connections without a header, new ones are refused until a header comes."""
        factory = ProxiedFactory(self.role, self.clock, max_pending=2)
        first, _ = connect(factory)
        connect(factory)
        self.assertIsNone(connect(factory)[0])
        first.dataReceived(v2())
        self.assertIsNotNone(connect(factory)[0])

    def test_log_prefix(self):
        """The listener is logged under the role's factory, marked as behind a proxy."""
        self.assertEqual(self.factory.logPrefix(), "_RecordingFactory (PROXY)")


class _Tracked(TrackingFactory):
    protocol = TrackedProtocol


class PerClientTests(SynchronousTestCase):
    """
    Limits per client count the clients HAProxy names, not HAProxy.
    """

    def test_limits_by_client(self):
        """Connections through one HAProxy are counted, and refused, per client address."""
        clock = MemoryReactorClock()
        role = _Tracked(clock)
        role.max_connections_per_client = 1
        factory = ProxiedFactory(role, clock)
        transports = []
        for client in ("192.0.2.7", "192.0.2.8", "192.0.2.7"):
            connection, transport = connect(factory)
            addresses = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 1, 3128)
            connection.dataReceived(v2(addresses=addresses))
            transports.append(transport)
        self.assertEqual([transport.connected for transport in transports], [True, True, False])
        self.assertEqual(sorted(protocol.client_host for protocol in role.connections), ["192.0.2.7", "192.0.2.8"])


class EndpointTests(SynchronousTestCase):
    """
    The haproxy: prefix of a listening description.
    """

    def test_prefix(self):
        """haproxy: descriptions are told apart, and unwrapped to the endpoint that listens."""
        self.assertTrue(is_proxied("haproxy:tcp:8081"))
        self.assertFalse(is_proxied("tcp:8081"))
        self.assertEqual(unwrapped("haproxy:tcp:8081:interface=127.0.0.1"), "tcp:8081:interface=127.0.0.1")
        self.assertEqual(unwrapped("tcp:8081"), "tcp:8081")

    def test_server_endpoint(self):
        """A haproxy: endpoint listens on the one under it with a ProxiedFactory around the role's."""
        reactor = MemoryReactorClock()
        endpoint = server_endpoint(reactor, "haproxy:tcp:8081:interface=127.0.0.1")
        self.assertIsInstance(endpoint, ProxiedEndpoint)
        role = _RecordingFactory()
        self.successResultOf(endpoint.listen(role))
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8081, "127.0.0.1"))
        self.assertIs(factory.wrappedFactory, role)
        self.assertIs(factory.clock, reactor)

    def test_plain_endpoint(self):
        """Any other description is Twisted's endpoint, unwrapped."""
        reactor = MemoryReactorClock()
        endpoint = server_endpoint(reactor, "tcp:8081")
        self.successResultOf(endpoint.listen(_RecordingFactory()))
        [(port, factory, _, _)] = reactor.tcpServers
        self.assertIsInstance(factory, _RecordingFactory)
