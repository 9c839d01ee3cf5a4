"""
Tests for L{netproxy.message.ack}: the ack server answers every chunk with its
reply, logs what it received, and closes idle connections.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.message.ack import AckFactory
from netproxy.testing import ClosingTransport, connect

PEER = IPv4Address("TCP", "127.0.0.1", 53211)


class AckTestCase(SynchronousTestCase):
    """
    Connects an L{AckProtocol} to a string transport.
    """

    def connect(self, **kwargs):
        """
        Build a protocol from a new L{AckFactory} (on C{self.clock}) and connect it.

        :returns: the protocol; its transport is C{self.transport}.
        """
        self.clock = Clock()
        self.factory = AckFactory(self.clock, **kwargs)
        protocol, self.transport = connect(self.factory, PEER, ClosingTransport(peerAddress=PEER))
        return protocol

    def received_events(self, events):
        """
        :returns: the formatted text of the "received" events among C{events}.
        """
        return [formatEvent(e) for e in events if e["log_format"].startswith("received ")]


class ReplyTests(AckTestCase):
    """
    Every chunk is answered with the reply bytes, and nothing else.
    """

    def test_done(self):
        """A chunk is answered with exactly DONE by default."""
        protocol = self.connect()
        protocol.dataReceived(b"tgmr")
        self.assertEqual(self.transport.value(), b"DONE")

    def test_custom_reply(self):
        """A chunk is answered with the factory's reply bytes exactly."""
        protocol = self.connect(reply=b"OK\r\n")
        protocol.dataReceived(b"tgmr")
        self.assertEqual(self.transport.value(), b"OK\r\n")

    def test_each_chunk(self):
        """Each chunk gets its own reply, as it arrives."""
        protocol = self.connect()
        protocol.dataReceived(b"one")
        self.assertEqual(self.transport.value(), b"DONE")
        protocol.dataReceived(b"two")
        protocol.dataReceived(b"three")
        self.assertEqual(self.transport.value(), b"DONEDONEDONE")

    def test_nothing_before_data(self):
        """Nothing is written before the peer sends something."""
        self.connect()
        self.assertEqual(self.transport.value(), b"")

    def test_stays_open(self):
        """The connection stays open after the reply."""
        protocol = self.connect()
        protocol.dataReceived(b"tgmr")
        self.assertTrue(self.transport.connected)
        self.assertIn(protocol, self.factory.connections)

    def test_transport_is_own_producer(self):
        """The transport is registered as its own streaming producer, so unread replies pause reading."""
        self.connect()
        self.assertIs(self.transport.producer, self.transport)
        self.assertTrue(self.transport.streaming)

    def test_non_utf8(self):
        """Bytes that are not UTF-8 are answered and logged escaped as \\xhh, not a crash."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"\xff\xfe\x80tg")
        self.assertEqual(self.transport.value(), b"DONE")
        self.assertTrue(self.transport.connected)
        self.assertEqual(self.received_events(events), ["received '\\xff\\xfe\\x80tg' from 127.0.0.1:53211"])

    def test_closed_by_peer(self):
        """A connection the peer closes leaves the factory's connections."""
        protocol = self.connect()
        self.transport.loseConnection()
        self.assertNotIn(protocol, self.factory.connections)


class LogTests(AckTestCase):
    """
    Every chunk received is logged at info level with the peer's address.
    """

    def test_received_logged(self):
        """A chunk is logged as "received 'tgmr' from 127.0.0.1:53211"."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"tgmr")
        self.assertEqual(self.received_events(events), ["received 'tgmr' from 127.0.0.1:53211"])
        [event] = [e for e in events if e["log_format"].startswith("received ")]
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["peer"], "127.0.0.1:53211")
        self.assertEqual(event["size"], 4)

    def test_control_characters_escaped(self):
        """A chunk with ESC and a newline is logged escaped, on one line."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"\x1b[2Jx\nforged")
        self.assertEqual(self.received_events(events), ["received '\\x1b[2Jx\\x0aforged' from 127.0.0.1:53211"])

    def test_each_chunk_logged(self):
        """Each chunk is logged on its own."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"a")
        protocol.dataReceived(b"b")
        self.assertEqual(
            self.received_events(events),
            ["received 'a' from 127.0.0.1:53211", "received 'b' from 127.0.0.1:53211"],
        )

    def test_huge_chunk_truncated(self):
        """A huge chunk is logged truncated, with its full size in the event."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol = self.connect()
        protocol.dataReceived(b"x" * 100000)
        self.assertEqual(self.transport.value(), b"DONE")
        [event] = [e for e in events if e["log_format"].startswith("received ")]
        self.assertEqual(event["size"], 100000)
        text = formatEvent(event)
        self.assertLess(len(text), 1000)
        self.assertTrue(text.startswith("received 'xxxx"), text)
        self.assertTrue(text.endswith("' from 127.0.0.1:53211"), text)


class IdleTimeoutTests(AckTestCase):
    """
    A peer that sends nothing for idle_timeout seconds is disconnected.
    """

    def test_idle_closes(self):
        """A connection idle for idle_timeout seconds is closed."""
        protocol = self.connect(idle_timeout=10)
        self.clock.advance(9.9)
        self.assertTrue(self.transport.connected)
        self.clock.advance(0.1)
        self.assertFalse(self.transport.connected)
        self.assertNotIn(protocol, self.factory.connections)

    def test_default_timeout(self):
        """The default idle timeout is 30 seconds."""
        self.connect()
        self.clock.advance(29.9)
        self.assertTrue(self.transport.connected)
        self.clock.advance(0.1)
        self.assertFalse(self.transport.connected)

    def test_data_resets(self):
        """Data received restarts the idle timer."""
        protocol = self.connect(idle_timeout=10)
        self.clock.advance(8)
        protocol.dataReceived(b"tgmr")
        self.clock.advance(8)
        self.assertTrue(self.transport.connected)
        self.clock.advance(2)
        self.assertFalse(self.transport.connected)

    def test_idle_close_unregisters_producer(self):
        """The transport stops being its own producer before an idle close, so a paused transport still closes."""
        self.connect(idle_timeout=1)
        self.clock.advance(1)
        self.assertIsNone(self.transport.producer_at_close)

    def test_idle_close_logged(self):
        """Closing an idle connection is logged with the peer."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.connect(idle_timeout=1)
        self.clock.advance(1)
        self.assertIn("closing idle connection from 127.0.0.1:53211", [formatEvent(e) for e in events])

    def test_no_timer_after_close(self):
        """A closed connection leaves no timer behind."""
        self.connect(idle_timeout=10)
        self.transport.loseConnection()
        self.assertEqual(self.clock.getDelayedCalls(), [])
