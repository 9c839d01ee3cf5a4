"""
Tests for L{netproxy.message.upper_client}: the TCP client waits for as many bytes
as it sent, the UDP client for one datagram, and both turn refusals and
silence into a one-line L{ClientError}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import ClientError
from netproxy.testing import FakeUDPPort, UDPMemoryReactor
from netproxy.message.upper import UpperFactory
from netproxy.message.upper_client import UpperTCPClient, UpperUDPClient, upper_tcp, upper_udp


class UpperTCPClientTests(SynchronousTestCase):
    """
    L{UpperTCPClient} sends its text and waits for as many bytes back.
    """

    def connect(self, text):
        """
        Connect a new L{UpperTCPClient} for C{text} to C{self.transport}.
        """
        client = UpperTCPClient(text)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = client
        client.makeConnection(self.transport)
        return client

    def test_sends_text(self):
        """The text is written as soon as the connection is made."""
        self.connect(b"hello")
        self.assertEqual(self.transport.value(), b"hello")

    def test_reply_in_pieces(self):
        """The reply fires once as many bytes as were sent have come back, in pieces."""
        client = self.connect(b"hello")
        client.dataReceived(b"HE")
        client.dataReceived(b"LL")
        self.assertNoResult(client.reply)
        client.dataReceived(b"O")
        self.assertEqual(self.successResultOf(client.reply), b"HELLO")

    def test_closes_when_complete(self):
        """The client closes the connection once the reply is complete."""
        client = self.connect(b"hi")
        client.dataReceived(b"HI")
        self.assertFalse(self.transport.connected)
        self.assertEqual(self.successResultOf(client.reply), b"HI")

    def test_multibyte_length(self):
        """The length compared is in bytes, so UTF-8 text completes correctly."""
        text = "é!".encode()
        client = self.connect(text)
        client.dataReceived(text[:2])
        self.assertNoResult(client.reply)
        client.dataReceived(text[2:])
        self.assertEqual(self.successResultOf(client.reply), text)

    def test_early_close(self):
        """A connection closed before the whole reply came is a ClientError saying how much came."""
        client = self.connect(b"hello")
        client.dataReceived(b"HE")
        self.transport.loseConnection()
        failure = self.failureResultOf(client.reply, ClientError)
        self.assertEqual(str(failure.value), "connection closed after 2 of 5 bytes")

    def test_empty_text(self):
        """An empty text has an empty reply, at once."""
        client = self.connect(b"")
        self.assertEqual(self.successResultOf(client.reply), b"")
        self.assertFalse(self.transport.connected)


class UpperTCPTests(SynchronousTestCase):
    """
    L{upper_tcp} connects, sends, and returns the reply or a L{ClientError}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()

    def call(self, text=b"hello, World! 123", timeout=5):
        return Deferred.fromCoroutine(upper_tcp(self.reactor, "127.0.0.1", 12000, text, timeout))

    def test_connects_with_timeout(self):
        """The connection goes to HOST:PORT with the timeout as connect timeout."""
        self.call(timeout=3)
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 12000, 3))

    def test_reply(self):
        """The upper server's reply is returned, and the connection closed."""
        self.reactor.listenTCP(12000, UpperFactory(self.reactor))
        d = self.call()
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        pump.flush()
        self.assertEqual(self.successResultOf(d), b"HELLO, WORLD! 123")
        self.assertTrue(pump.clientIO.disconnecting)

    def test_refused(self):
        """A refused connection is ClientError "could not connect to HOST:PORT: connection refused"."""
        d = self.call()
        ConnectionCompleter(self.reactor).failOnce()
        # HostnameEndpoint gives up once its next attempt (0.3 s later) finds
        # no more addresses: well before the 5 s timeout.
        self.reactor.advance(1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "could not connect to 127.0.0.1:12000: connection refused")

    def test_no_reply(self):
        """A server that never answers is a ClientError once the timeout has passed."""
        self.reactor.listenTCP(12000, Factory.forProtocol(Protocol))
        d = self.call(timeout=2.5)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        pump.flush()
        self.reactor.advance(2.4)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "no reply from 127.0.0.1:12000 within 2.5 seconds")
        self.assertTrue(pump.clientIO.disconnecting)

    def test_server_closes_early(self):
        """A server that closes before answering everything is a ClientError."""

        class Partial(Protocol):
            def dataReceived(self, data):
                self.transport.write(data[:3].upper())
                self.transport.loseConnection()

        self.reactor.listenTCP(12000, Factory.forProtocol(Partial))
        d = self.call(text=b"hello")
        ConnectionCompleter(self.reactor).succeedOnce().flush()
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "connection closed after 3 of 5 bytes")


class UpperUDPClientTests(SynchronousTestCase):
    """
    L{UpperUDPClient} sends one datagram and takes the first one back.
    """

    def setUp(self):
        self.transport = FakeUDPPort(0, None, "")
        self.client = UpperUDPClient(b"hello", "127.0.0.1", 12000)
        self.transport.protocol = self.client
        self.client.makeConnection(self.transport)

    def test_sends_to_server(self):
        """The text is one datagram on a socket connected to the server."""
        self.assertEqual(self.transport.connected_to, ("127.0.0.1", 12000))
        self.assertEqual(self.transport.written, [(b"hello", None)])

    def test_first_datagram(self):
        """The first datagram back is the reply; later ones are ignored."""
        self.client.datagramReceived(b"HELLO", ("127.0.0.1", 12000))
        self.client.datagramReceived(b"AGAIN", ("127.0.0.1", 12000))
        self.assertEqual(self.successResultOf(self.client.reply), b"HELLO")

    def test_refused(self):
        """An ICMP refusal is a ClientError naming the server."""
        self.client.connectionRefused()
        failure = self.failureResultOf(self.client.reply, ClientError)
        self.assertEqual(str(failure.value), "127.0.0.1:12000 refused the datagram")


class UpperUDPTests(SynchronousTestCase):
    """
    L{upper_udp} sends one datagram and returns the reply or a L{ClientError}.
    """

    def setUp(self):
        self.reactor = UDPMemoryReactor({"localhost": "127.0.0.1"})

    def call(self, host="127.0.0.1", text=b"hello", timeout=2):
        return Deferred.fromCoroutine(upper_udp(self.reactor, host, 12000, text, timeout))

    def test_sends_datagram(self):
        """One datagram with the text goes to the server's address."""
        self.call()
        [port] = self.reactor.udpPorts
        self.assertEqual(port.port, 0)
        self.assertEqual(port.connected_to, ("127.0.0.1", 12000))
        self.assertEqual(port.written, [(b"hello", None)])

    def test_ipv4_interface(self):
        """An IPv4 server is reached from an IPv4 socket."""
        self.call()
        self.assertEqual(self.reactor.udpPorts[0].interface, "")

    def test_ipv6_interface(self):
        """An IPv6 server is reached from an IPv6 socket."""
        self.call(host="::1")
        [port] = self.reactor.udpPorts
        self.assertEqual(port.interface, "::")
        self.assertEqual(port.connected_to, ("::1", 12000))

    def test_name_resolved(self):
        """A host name is resolved before sending."""
        self.call(host="localhost")
        self.assertEqual(self.reactor.udpPorts[0].connected_to, ("127.0.0.1", 12000))

    def test_reply(self):
        """The reply datagram is returned and the socket closed."""
        d = self.call()
        [port] = self.reactor.udpPorts
        port.protocol.datagramReceived(b"HELLO", ("127.0.0.1", 12000))
        self.assertEqual(self.successResultOf(d), b"HELLO")
        self.assertFalse(port.listening)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_empty_reply(self):
        """An empty reply datagram is a reply, not silence."""
        d = self.call(text=b"")
        self.reactor.udpPorts[0].protocol.datagramReceived(b"", ("127.0.0.1", 12000))
        self.assertEqual(self.successResultOf(d), b"")

    def test_no_reply(self):
        """No reply within the timeout is ClientError "no reply from HOST:PORT within N seconds"."""
        d = self.call(timeout=2)
        self.reactor.advance(1.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "no reply from 127.0.0.1:12000 within 2 seconds")
        self.assertFalse(self.reactor.udpPorts[0].listening)

    def test_refused(self):
        """A refused datagram is a ClientError, before the timeout."""
        d = self.call()
        [port] = self.reactor.udpPorts
        port.protocol.connectionRefused()
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "127.0.0.1:12000 refused the datagram")
        self.assertFalse(port.listening)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
