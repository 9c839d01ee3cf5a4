"""
Tests for L{netproxy.http.tunnel}: C{CONNECT host:port} through the HTTP
proxy opens a raw tunnel, bytes go both ways unchanged with back-pressure,
and a close on either side closes the other.
"""

from ipaddress import ip_address

from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.tunnel import ESTABLISHED
from netproxy.testing import complete_connection, connect, fail_connection
from netproxy.this_host import LocalDestinations
from tests.address_helpers import THIS_HOST
from tests.http_helpers import CLIENT, LocalDestinationTestCase, make_factory

CONNECT = b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n"


class TunnelTestCase(SynchronousTestCase):
    """
    CONNECT tunnels through a L{ProxyFactory} on a memory reactor.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor, "127.0.0.66")
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def send(self, data):
        """
        Deliver C{data} from the client.
        """
        self.protocol.dataReceived(data)

    def open(self, extra=b""):
        """
        Send a CONNECT (followed by C{extra}) and let the destination accept.

        :returns: the destination's transport.
        """
        self.send(CONNECT + extra)
        return complete_connection(self.reactor)[1]

    def assertRefused(self, status, cause):
        """
        The client got a C{status} page naming C{cause}, and was closed.
        """
        data = self.transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 %d " % (status,)), data)
        self.assertIn(b"Content-Type: text/html; charset=utf-8\r\n", data)
        self.assertIn(cause, data)
        self.assertFalse(self.transport.connected)


class TunnelTests(TunnelTestCase):
    """
    Tunnels open, carry bytes both ways, and close.
    """

    def test_connects(self):
        """CONNECT host:port connects to that host and port."""
        self.send(CONNECT)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 443))
        self.assertEqual(self.transport.value(), b"")

    def test_established(self):
        """Once the destination accepts, the client gets 200 Connection established and nothing else."""
        self.open()
        self.assertEqual(self.transport.value(), ESTABLISHED)
        self.assertEqual(ESTABLISHED, b"HTTP/1.1 200 Connection established\r\n\r\n")

    def test_client_to_destination(self):
        """Bytes from the client reach the destination unchanged, even ones that look like HTTP."""
        destination = self.open()
        self.send(b"\x16\x03\x01\x00")
        self.send(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        self.assertEqual(destination.value(), b"\x16\x03\x01\x00GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")

    def test_destination_to_client(self):
        """Bytes from the destination reach the client unchanged."""
        destination = self.open()
        self.transport.clear()
        destination.protocol.dataReceived(b"\x16\x03\x03\x00\xff")
        self.assertEqual(self.transport.value(), b"\x16\x03\x03\x00\xff")

    def test_early_bytes(self):
        """Bytes sent before the destination accepted, with the CONNECT or after it, are delivered in order."""
        self.send(CONNECT + b"early ")
        self.send(b"bytes")
        destination = complete_connection(self.reactor)[1]
        self.send(b"!")
        self.assertEqual(destination.value(), b"early bytes!")

    def test_destination_closes(self):
        """The destination closing closes the client, with its producer unregistered."""
        destination = self.open()
        destination.loseConnection()
        self.assertFalse(self.transport.connected)
        self.assertIsNone(self.transport.producer)

    def test_client_closes(self):
        """The client closing closes the destination, with its producer unregistered."""
        destination = self.open()
        self.transport.loseConnection()
        self.assertFalse(destination.connected)
        self.assertIsNone(destination.producer)

    def test_client_closes_while_connecting(self):
        """A client that leaves before the destination accepts cancels the attempt."""
        self.send(CONNECT)
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_back_pressure(self):
        """Each transport is the other's streaming producer, and the client is paused until connected."""
        self.send(CONNECT)
        self.assertEqual(self.transport.producerState, "paused")
        destination = complete_connection(self.reactor)[1]
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual((self.transport.producer, self.transport.streaming), (destination, True))
        self.assertEqual((destination.producer, destination.streaming), (self.transport, True))
        self.transport.producer.pauseProducing()
        self.assertEqual(destination.producerState, "paused")

    def test_idle_tunnel_stays(self):
        """A quiet tunnel is not closed by the client idle timeout."""
        self.open()
        self.reactor.advance(300)
        self.assertTrue(self.transport.connected)

    def test_refused(self):
        """A refused destination is 502."""
        self.send(CONNECT)
        fail_connection(self.reactor, ConnectionRefusedError())
        self.reactor.advance(0.3)
        self.assertRefused(502, b"could not connect to 127.0.0.1:443: connection refused")

    def test_timed_out(self):
        """A destination that does not accept in time is 504."""
        self.send(CONNECT)
        fail_connection(self.reactor, TimeoutError())
        self.reactor.advance(0.3)
        self.assertRefused(504, b"could not connect to 127.0.0.1:443: timed out")

    def test_port_not_allowed(self):
        """CONNECT to a port not in --connect-port is 403, without connecting."""
        self.send(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n")
        self.assertRefused(403, b"CONNECT to port 22 is not allowed")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_blocked(self):
        """CONNECT to a blocked destination is 403, without connecting."""
        self.send(b"CONNECT 127.0.0.66:443 HTTP/1.1\r\n\r\n")
        self.assertRefused(403, b"destination 127.0.0.66:443 is blocked")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_no_port(self):
        """CONNECT without a port is 400."""
        self.send(b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n")
        self.assertRefused(400, b"a port is required")


class TunnelAccessLogTests(TunnelTestCase):
    """
    A tunnel is one access event, written when it closes, with the bytes
    sent to the client; one that could not open is logged with its error.
    """

    def setUp(self):
        super().setUp()
        self.events = []
        self.factory.access_log.add_observer(self.events.append)

    def test_logged_when_closed(self):
        """An established tunnel is logged as 200 with the bytes it carried to the client, once."""
        destination = self.open()
        self.assertEqual(self.events, [])
        destination.protocol.dataReceived(b"hello")
        destination.loseConnection()
        self.transport.loseConnection()
        [event] = self.events
        self.assertEqual((event["method"], event["url"], event["status"], event["size"]),
                         (b"CONNECT", b"127.0.0.1:443", 200, 5))

    def test_client_closes(self):
        """A tunnel the client closes is logged too."""
        self.open()
        self.transport.loseConnection()
        self.assertEqual([e["status"] for e in self.events], [200])

    def test_refused_logged_once(self):
        """A tunnel whose destination refuses is logged once, as 502."""
        self.send(CONNECT)
        fail_connection(self.reactor, ConnectionRefusedError())
        self.transport.loseConnection()
        self.assertEqual([e["status"] for e in self.events], [502])


class LocalDestinationTests(LocalDestinationTestCase):
    """
    CONNECT to this host, however it is spelled, is refused unless local destinations are allowed, and
    matched by a loopback rule either way.
    """

    def test_refused_by_default(self):
        """CONNECT to every spelling of this host gets 403 naming --allow-local, without a connection."""
        factory = make_factory(self.reactor)
        factory.local = LocalDestinations(lambda: [])
        for host in THIS_HOST:
            body = self.refused(factory, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % (host.encode(),))
            self.assertIn(f"destination {host.lower()}:443 is this host: ", body)
            self.assertIn("(--allow-local allows it)", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_own_address_refused(self):
        """CONNECT to one of this host's interface addresses is refused."""
        factory = make_factory(self.reactor)
        factory.local = LocalDestinations(lambda: [ip_address("2001:db8::80")])
        body = self.refused(factory, b"CONNECT [2001:db8::80]:443 HTTP/1.1\r\n\r\n")
        self.assertIn("one of this host's own interface addresses", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_loopback_rule_with_local_allowed(self):
        """With local destinations allowed, a 127.0.0.0/8 rule still matches every spelling of this host."""
        factory = make_factory(self.reactor, "127.0.0.0/8")
        for host in THIS_HOST:
            body = self.refused(factory, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % (host.encode(),))
            self.assertIn("127.0.0.0/8", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_allowed(self):
        """With local destinations allowed and no rule, CONNECT 0.0.0.0 is connected (Linux: to this host)."""
        protocol, transport = connect(make_factory(self.reactor), CLIENT)
        protocol.dataReceived(b"CONNECT 0.0.0.0:443 HTTP/1.1\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("0.0.0.0", 443))
