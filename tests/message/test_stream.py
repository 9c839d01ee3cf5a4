"""
Tests for L{netproxy.message.stream}: messages decoded into a queue and
handled one at a time, framing errors in their place, half-close and the
graceful shutdown.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import FramingError
from netproxy.message.codec import DEFAULT_MAX_SIZE
from netproxy.message.stream import MessageStreamFactory, MessageStreamProtocol

PEER = IPv4Address("TCP", "127.0.0.1", 5555)


class Recorder(MessageStreamProtocol):
    """
    Takes one message at a time: each stays in flight until L{finish}.
    """

    def connectionMade(self):
        super().connectionMade()
        self.handled = []
        self.busy = False

    def _next(self):
        while self.queue and not self.busy:
            self.handled.append(self.queue.popleft())
            self.busy = True

    def working(self):
        return self.busy

    def finish(self):
        """
        End the message in flight, as a subclass does when its work is done.
        """
        self.busy = False
        if not self.work_done():
            self._next()


class RecorderFactory(MessageStreamFactory):
    protocol = Recorder


class MessageStreamTestCase(SynchronousTestCase):
    """
    A L{Recorder} connected to a transport, with a 10-second idle timeout.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = RecorderFactory(self.reactor, 10.0, max_size=64)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransportWithDisconnection(peerAddress=PEER)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)


class FactoryTests(SynchronousTestCase):
    """
    L{MessageStreamFactory} gives its protocols their size limit.
    """

    def test_default_size(self):
        """Without max_size the limit is the codec's default."""
        self.assertEqual(MessageStreamFactory().max_size, DEFAULT_MAX_SIZE)

    def test_limit_reaches_decoder(self):
        """A message larger than max_size is queued as a FramingError."""
        factory = RecorderFactory(None, None, max_size=16)
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(StringTransportWithDisconnection(peerAddress=PEER))
        protocol.dataReceived(b'{"payload": "' + b"x" * 32 + b'"}')
        [error] = protocol.handled
        self.assertIsInstance(error, FramingError)


class QueueTests(MessageStreamTestCase):
    """
    Messages are handled one at a time, in order.
    """

    def test_one_at_a_time(self):
        """A second message waits in the queue until the first is done."""
        self.protocol.dataReceived(b'{"n": 1}{"n": 2}')
        self.assertEqual(self.protocol.handled, [{"n": 1}])
        self.assertEqual(list(self.protocol.queue), [{"n": 2}])
        self.protocol.finish()
        self.assertEqual(self.protocol.handled, [{"n": 1}, {"n": 2}])

    def test_framing_error_in_place(self):
        """A framing error is queued after the messages that came before it."""
        self.protocol.dataReceived(b'{"n": 1}{"n": 2}}')
        self.protocol.finish()
        self.assertEqual(self.protocol.handled, [{"n": 1}, {"n": 2}])
        self.assertEqual(len(self.protocol.queue), 1)
        self.assertIsInstance(self.protocol.queue[0], FramingError)

    def test_traffic_resets_idle_timeout(self):
        """Data from the peer puts off the idle timeout."""
        self.reactor.advance(9)
        self.protocol.dataReceived(b" ")
        self.reactor.advance(9)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(1)
        self.assertFalse(self.transport.connected)


class HalfCloseTests(MessageStreamTestCase):
    """
    A peer that half-closes has what it sent handled, then the connection closes.
    """

    def test_closes_once_answered(self):
        """After the peer's half-close the connection closes when the last message is done."""
        self.protocol.dataReceived(b'{"n": 1}{"n": 2}')
        self.protocol.readConnectionLost()
        self.assertTrue(self.transport.connected)
        self.protocol.finish()
        self.assertTrue(self.transport.connected)
        self.protocol.finish()
        self.assertEqual(self.protocol.handled, [{"n": 1}, {"n": 2}])
        self.assertFalse(self.transport.connected)

    def test_idle_closes_at_once(self):
        """A half-close with nothing in flight closes the connection at once."""
        self.protocol.readConnectionLost()
        self.assertFalse(self.transport.connected)

    def test_write_side_lost(self):
        """When the peer stops reading, the connection closes."""
        self.protocol.writeConnectionLost()
        self.assertFalse(self.transport.connected)


class ShutdownTests(MessageStreamTestCase):
    """
    A graceful shutdown finishes the work in flight and starts nothing new.
    """

    def test_idle_closes_at_once(self):
        """With nothing in flight the connection closes at once."""
        self.protocol.close_when_idle()
        self.assertFalse(self.transport.connected)

    def test_work_in_flight_finishes(self):
        """The message in flight finishes; the queued ones and later data are dropped; then it closes."""
        self.protocol.dataReceived(b'{"n": 1}{"n": 2}')
        self.protocol.close_when_idle()
        self.assertTrue(self.transport.connected)
        self.protocol.dataReceived(b'{"n": 3}')
        self.assertEqual(list(self.protocol.queue), [])
        self.protocol.finish()
        self.assertEqual(self.protocol.handled, [{"n": 1}])
        self.assertFalse(self.transport.connected)

    def test_leaves_factory(self):
        """A closed connection leaves its factory's connections."""
        self.assertEqual(self.factory.connections, {self.protocol})
        self.protocol.close_when_idle()
        self.assertEqual(self.factory.connections, set())


class HookTests(SynchronousTestCase):
    """
    The hooks a subclass must define are declared in the base.
    """

    def test_hooks_declared(self):
        """_next and working raise NotImplementedError until a subclass defines them."""
        protocol = MessageStreamProtocol()
        self.assertRaises(NotImplementedError, protocol._next)
        self.assertRaises(NotImplementedError, protocol.working)
