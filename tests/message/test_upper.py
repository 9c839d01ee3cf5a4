"""
Tests for L{netproxy.message.upper}: the upper server changes ASCII a-z and no other
byte, streams its TCP replies with back-pressure, closes idle connections,
and answers each UDP datagram to its sender.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    FakeDatagramTransport,
)
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.testing import ClosingTransport, connect
from netproxy.message.upper import UpperDatagramProtocol, UpperFactory

PEER = IPv4Address("TCP", "127.0.0.1", 53211)


class UpperTestCase(SynchronousTestCase):
    """
    Connects an L{UpperProtocol} to a string transport.
    """

    def connect(self, **kwargs):
        """
        Build a protocol from a new L{UpperFactory} (on C{self.clock}) and connect it.

        :returns: the protocol; its transport is C{self.transport}.
        """
        self.clock = Clock()
        self.factory = UpperFactory(self.clock, **kwargs)
        protocol, self.transport = connect(self.factory, PEER, ClosingTransport(peerAddress=PEER))
        return protocol

    def upper(self, data):
        """
        :returns: what a new connection answers to C{data}.
        """
        self.connect().dataReceived(data)
        return self.transport.value()


class TCPBytesTests(UpperTestCase):
    """
    Over TCP, exactly the bytes a-z are changed, into A-Z.
    """

    def test_text(self):
        """Letters are upper-cased; digits, spaces and punctuation are kept."""
        self.assertEqual(self.upper(b"hello, World! 123"), b"HELLO, WORLD! 123")

    def test_every_byte_value(self):
        """Of all 256 byte values only 97..122 change, each into its upper case."""
        data = bytes(range(256))
        reply = self.upper(data)
        self.assertEqual(len(reply), 256)
        for value in range(256):
            expected = value - 32 if 97 <= value <= 122 else value
            self.assertEqual(reply[value], expected, f"byte {value}")

    def test_utf8_unchanged(self):
        """UTF-8 text keeps every non-ASCII character as it is: 'é' stays 'é'."""
        text = "é straße ÿ ı"
        self.assertEqual(self.upper(text.encode("utf-8")), "é STRAßE ÿ ı".encode())

    def test_lone_e_acute(self):
        """The two bytes of a UTF-8 'é' are sent back unchanged."""
        self.assertEqual(self.upper("é".encode()), b"\xc3\xa9")

    def test_empty_chunk(self):
        """An empty chunk is answered with nothing."""
        self.assertEqual(self.upper(b""), b"")


class TCPStreamingTests(UpperTestCase):
    """
    TCP replies are streamed per chunk, with back-pressure, on an open connection.
    """

    def test_reply_per_chunk(self):
        """Each chunk is answered when it arrives, not at the end of the connection."""
        protocol = self.connect()
        protocol.dataReceived(b"abc")
        self.assertEqual(self.transport.value(), b"ABC")
        protocol.dataReceived(b"def")
        self.assertEqual(self.transport.value(), b"ABCDEF")
        self.assertTrue(self.transport.connected)

    def test_chunks_keep_order(self):
        """Many chunks come back in order, all of them."""
        protocol = self.connect()
        chunks = [bytes([97 + i % 26]) * (i + 1) for i in range(50)]
        for chunk in chunks:
            protocol.dataReceived(chunk)
        self.assertEqual(self.transport.value(), b"".join(chunks).upper())

    def test_transport_is_own_producer(self):
        """The transport is registered as its own streaming producer, for back-pressure."""
        self.connect()
        self.assertIs(self.transport.producer, self.transport)
        self.assertTrue(self.transport.streaming)

    def test_tracked(self):
        """An open connection is in the factory's connections until it closes."""
        protocol = self.connect()
        self.assertIn(protocol, self.factory.connections)
        self.transport.loseConnection()
        self.assertNotIn(protocol, self.factory.connections)

    def test_connection_logged(self):
        """A connection and its close are logged with the peer and the byte count."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"abc")
        protocol.dataReceived(b"de")
        self.transport.loseConnection()
        texts = [formatEvent(e) for e in events]
        self.assertIn("connection from 127.0.0.1:53211", texts)
        self.assertIn("connection from 127.0.0.1:53211 closed after 5 bytes", texts)


class TCPIdleTimeoutTests(UpperTestCase):
    """
    A TCP peer that sends nothing for idle_timeout seconds is disconnected.
    """

    def test_idle_closes(self):
        """A connection idle for idle_timeout seconds is closed."""
        protocol = self.connect(idle_timeout=5)
        self.clock.advance(4.5)
        self.assertTrue(self.transport.connected)
        self.clock.advance(0.5)
        self.assertFalse(self.transport.connected)
        self.assertNotIn(protocol, self.factory.connections)

    def test_idle_close_unregisters_producer(self):
        """The transport stops being its own producer before an idle close, so a paused transport still closes."""
        self.connect(idle_timeout=5)
        self.clock.advance(5)
        self.assertIsNone(self.transport.producer_at_close)

    def test_idle_close_logged(self):
        """Closing an idle connection is logged with the peer."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.connect(idle_timeout=5)
        self.clock.advance(5)
        self.assertIn("closing idle connection from 127.0.0.1:53211", [formatEvent(e) for e in events])

    def test_data_resets(self):
        """Data received restarts the idle timer."""
        protocol = self.connect(idle_timeout=5)
        self.clock.advance(4)
        protocol.dataReceived(b"x")
        self.clock.advance(4)
        self.assertTrue(self.transport.connected)
        self.clock.advance(1)
        self.assertFalse(self.transport.connected)

    def test_default_timeout(self):
        """The default idle timeout is 30 seconds."""
        self.connect()
        self.clock.advance(29)
        self.assertTrue(self.transport.connected)
        self.clock.advance(1)
        self.assertFalse(self.transport.connected)

    def test_no_timer_after_close(self):
        """A closed connection leaves no timer behind."""
        self.connect()
        self.transport.loseConnection()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class UDPTests(SynchronousTestCase):
    """
    Each UDP datagram is answered with its upper-cased copy, to its sender.
    """

    def setUp(self):
        self.transport = FakeDatagramTransport()
        self.protocol = UpperDatagramProtocol()
        self.protocol.makeConnection(self.transport)

    def test_answer_to_sender(self):
        """A datagram is answered with its upper-cased copy, sent to its sender."""
        self.protocol.datagramReceived(b"hello, World! 123", ("127.0.0.1", 40000))
        self.assertEqual(self.transport.written, [(b"HELLO, WORLD! 123", ("127.0.0.1", 40000))])

    def test_each_datagram(self):
        """Each datagram gets its own reply, to its own sender."""
        self.protocol.datagramReceived(b"a", ("127.0.0.1", 1))
        self.protocol.datagramReceived(b"b", ("127.0.0.2", 2))
        self.assertEqual(self.transport.written, [(b"A", ("127.0.0.1", 1)), (b"B", ("127.0.0.2", 2))])

    def test_empty_datagram(self):
        """An empty datagram is answered with an empty datagram."""
        self.protocol.datagramReceived(b"", ("127.0.0.1", 40000))
        self.assertEqual(self.transport.written, [(b"", ("127.0.0.1", 40000))])

    def test_only_ascii_letters(self):
        """Of all 256 byte values only a-z change in a datagram."""
        self.protocol.datagramReceived(bytes(range(256)), ("127.0.0.1", 40000))
        [(reply, _)] = self.transport.written
        self.assertEqual(reply, bytes(v - 32 if 97 <= v <= 122 else v for v in range(256)))

    def test_ipv6_sender(self):
        """A datagram from an IPv6 sender is answered to its full address."""
        address = ("::1", 40000, 0, 0)
        self.protocol.datagramReceived("é".encode() + b"x", address)
        self.assertEqual(self.transport.written, [(b"\xc3\xa9X", address)])
