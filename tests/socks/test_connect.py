"""
Tests for L{netproxy.socks.connect}: a CONNECT's destination, connected
once checked and spliced to its client, seen from a fake client.
"""

from twisted.internet import error as neterror
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.socks import negotiation
from netproxy.socks.connect import ConnectTunnel
from netproxy.socks.metrics import SocksMetrics
from netproxy.socks.negotiation import Request
from netproxy.testing import complete_connection, fail_connection


class FakeFactory:
    """
    What a tunnel reads of the role.
    """

    def __init__(self):
        self.reactor = MemoryReactorClock()
        self.rules = RuleSet([parse_rule("192.0.2.66")])
        self.local = None
        self.connect_timeout = 10
        self.connections = set()
        self.tunnels = 0
        self.metrics = SocksMetrics(self)

    @property
    def destination_rules(self):
        return self.rules


class FakeClient:
    """
    A client connection that records what the tunnel tells it.
    """

    def __init__(self):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
        self.factory = FakeFactory()
        self.stopping = False
        self.calls = []
        self.moved_bytes = [0, 0]

    def established(self, address, bound):
        self.calls.append(("established", address))

    def moved(self, forwarded=0, returned=0):
        self.moved_bytes[0] += forwarded
        self.moved_bytes[1] += returned

    def refuse(self, code, reason):
        self.calls.append(("refuse", code))

    def close(self):
        self.calls.append(("close",))


class ConnectTunnelTests(SynchronousTestCase):
    """
    The tunnel's life.
    """

    def setUp(self):
        self.client = FakeClient()
        self.tunnel = ConnectTunnel(self.client, Request(negotiation.CONNECT, "192.0.2.1", 80, negotiation.IPV4))

    def test_established(self):
        """Once connected, the client hears of it, then bytes go both ways and are counted."""
        self.tunnel.open()
        self.assertEqual(self.client.transport.producerState, "paused")
        destination, upstream = complete_connection(self.client.factory.reactor)
        self.assertEqual(self.client.calls, [("established", "192.0.2.1:80")])
        self.assertEqual(self.client.transport.producerState, "producing")
        self.tunnel.client_data(b"up")
        destination.dataReceived(b"down!")
        self.assertEqual((upstream.value(), self.client.transport.value()), (b"up", b"down!"))
        self.assertEqual(self.client.moved_bytes, [2, 5])
        self.assertEqual(self.client.factory.metrics.connect_seconds.count(), 1)

    def test_destination_closes(self):
        """The destination closing closes the client, once."""
        self.tunnel.open()
        destination, upstream = complete_connection(self.client.factory.reactor)
        destination.connectionLost(None)
        destination.connectionLost(None)
        self.assertEqual(self.client.calls[1:], [("close",)])

    def test_refused(self):
        """A failed connection is refused with its reply code."""
        self.tunnel.open()
        fail_connection(self.client.factory.reactor, neterror.ConnectionRefusedError())
        self.assertEqual(self.client.calls, [("refuse", negotiation.CONNECTION_REFUSED)])

    def test_blocked(self):
        """A blocked address is refused with reply 2 at once."""
        tunnel = ConnectTunnel(self.client, Request(negotiation.CONNECT, "192.0.2.66", 80, negotiation.IPV4))
        tunnel.open()
        self.assertEqual(self.client.calls, [("refuse", negotiation.NOT_ALLOWED)])

    def test_closed_while_connecting(self):
        """A tunnel closed while connecting cancels the attempt and tells the client nothing."""
        self.tunnel.open()
        self.tunnel.close()
        self.assertEqual(self.client.calls, [])
