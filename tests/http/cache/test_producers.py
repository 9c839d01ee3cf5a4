"""
Tests for L{netproxy.http.cache.producers}, driven without a store: the
one-step-per-turn scheduling, and a stored body streamed from a file
object.  How every store streams through them is part of the store
contract, in C{test_interfaces}.
"""

import io
import zlib

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.entry import CHUNK_SIZE, DamagedEntry, Entry, StreamStopped
from netproxy.http.cache.producers import BodyProducer, Stream, next_turn, one_step, stream_body
from tests.cache_helpers import KEY, META, ClosedTransport, TurnsMixin, body_of


def entry_for(body):
    """:returns: the L{Entry} of C{body}."""
    return Entry(KEY, META, len(body), zlib.crc32(body))


class SchedulingTests(SynchronousTestCase):
    """A step per reactor turn."""

    def test_next_turn(self):
        """next_turn runs a step on the reactor's next turn, not at once."""
        clock = Clock()
        ran = []
        next_turn(clock)(lambda: ran.append(True))
        self.assertEqual(ran, [])
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [0])
        clock.advance(0)
        self.assertEqual(ran, [True])

    def test_one_step(self):
        """one_step's predicate ends every tick after its first step."""
        self.assertTrue(one_step()())

    def test_hooks_declared(self):
        """The hooks a stream's subclasses define are declared by the base class."""
        stream = Stream(next_turn(Clock()))
        self.assertRaises(NotImplementedError, stream._open)
        self.assertRaises(NotImplementedError, stream._steps, None)
        self.assertRaises(NotImplementedError, stream._close)


class BodyProducerTests(TurnsMixin, SynchronousTestCase):
    """L{BodyProducer} and L{stream_body}, from file objects."""

    def stream(self, entry, body, **kwargs):
        """
        Stream C{body} as C{entry}'s to a new transport.

        :returns: the transport and the L{Deferred}.
        """
        transport = StringTransport()
        return transport, BodyProducer(entry, lambda: io.BytesIO(body), self.schedule, **kwargs).start(transport)

    def test_small_body_kept(self):
        """A small body is checked, handed to keep, and sent on the next turn."""
        kept = []
        transport, d = self.stream(entry_for(b"body"), b"body", keep=kept.append)
        self.assertEqual((kept, transport.value()), ([b"body"], b""))
        self.run_turns()
        self.assertEqual(transport.value(), b"body")
        self.assertIsNone(self.successResultOf(d))

    def test_verified_not_checked(self):
        """A body said to be verified is neither checked again nor kept again."""
        kept = []
        entry = entry_for(b"body")
        transport, d = self.stream(entry, b"bodx", verified=True, keep=kept.append)
        self.run_turns()
        self.assertEqual((kept, transport.value()), ([], b"bodx"))
        self.successResultOf(d)

    def test_damaged_small_body(self):
        """A small body that fails its check fails at once, registering and keeping nothing."""
        kept = []
        transport, d = self.stream(entry_for(b"body"), b"bodx", keep=kept.append)
        self.failureResultOf(d, DamagedEntry)
        self.assertEqual((kept, transport.producer, self.run_turns()), ([], None, 0))

    def test_unreadable(self):
        """A body that cannot be opened is damaged."""

        def unreadable():
            raise PermissionError(13, "Permission denied")

        transport = StringTransport()
        d = BodyProducer(entry_for(b"body"), unreadable, self.schedule).start(transport)
        self.assertIn("cannot be read", str(self.failureResultOf(d, DamagedEntry).value))

    def test_large_body_not_kept(self):
        """A body larger than a chunk is streamed a chunk a turn, and never kept."""
        body = body_of(2 * CHUNK_SIZE + 1)
        kept = []
        transport, d = self.stream(entry_for(body), body, keep=kept.append)
        self.assertEqual(self.run_turns(), 4)
        self.assertEqual((kept, transport.value()), ([], body))
        self.successResultOf(d)

    def test_closed_when_done(self):
        """The file object is closed once the body is sent, or the stream stopped."""
        for transport_class in (StringTransport, ClosedTransport):
            source = io.BytesIO(body_of(2 * CHUNK_SIZE))
            producer = BodyProducer(entry_for(source.getvalue()), lambda: source, self.schedule)
            d = producer.start(transport_class())
            self.run_turns()
            self.assertTrue(source.closed)
            if transport_class is ClosedTransport:
                self.failureResultOf(d, StreamStopped)

    def test_stream_body_discards_damaged(self):
        """stream_body hands a damaged entry and its error to discard."""
        discarded = []
        entry = entry_for(b"body")
        d = stream_body(entry, lambda: io.BytesIO(b"bodx"), StringTransport(), self.schedule,
                        lambda *args: discarded.append(args))
        error = self.failureResultOf(d, DamagedEntry).value
        self.assertEqual(discarded, [(entry, error)])

    def test_stream_body_stopped_not_discarded(self):
        """A body stream the consumer stopped is not damage: nothing is discarded."""
        discarded = []
        d = stream_body(entry_for(b"body"), lambda: io.BytesIO(b"body"), ClosedTransport(), self.schedule,
                        lambda *args: discarded.append(args))
        self.failureResultOf(d, StreamStopped)
        self.assertEqual(discarded, [])

    def test_unregister_failure_logged(self):
        """A consumer that fails to unregister the producer is logged; the stream still completes."""

        class Failing(StringTransport):
            def unregisterProducer(self):
                raise RuntimeError("unregister")

        d = BodyProducer(entry_for(b"body"), lambda: io.BytesIO(b"body"), self.schedule).start(Failing())
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class WindowTests(TurnsMixin, SynchronousTestCase):
    """A window of a body: only its bytes are read and sent, a chunk a turn."""

    def test_window_of_large_body(self):
        """The bytes from first to last (inclusive) are sent, reading no further, without keeping anything."""
        body = body_of(3 * CHUNK_SIZE)

        class Counting(io.BytesIO):
            read_bytes = 0

            def read(self, size=-1):
                data = super().read(size)
                Counting.read_bytes += len(data)
                return data

        kept = []
        transport = StringTransport()
        first, last = CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 9
        d = BodyProducer(entry_for(body), lambda: Counting(body), self.schedule, keep=kept.append,
                         window=(first, last)).start(transport)
        self.assertEqual(transport.value(), b"")
        self.run_turns()
        self.assertEqual(transport.value(), body[first:last + 1])
        self.assertEqual((Counting.read_bytes, kept), (last - first + 1, []))
        self.successResultOf(d)

    def test_window_of_small_body(self):
        """A window of a small body is its slice, sent on the next turn."""
        transport = StringTransport()
        d = BodyProducer(entry_for(b"0123456789"), lambda: io.BytesIO(b"0123456789"), self.schedule,
                         window=(2, 4)).start(transport)
        self.run_turns()
        self.assertEqual(transport.value(), b"234")
        self.successResultOf(d)

    def test_window_of_short_body(self):
        """A body shorter than its record fails before anything is sent, window or not."""
        transport = StringTransport()
        body = body_of(2 * CHUNK_SIZE)
        d = BodyProducer(entry_for(body), lambda: io.BytesIO(body[:-1]), self.schedule,
                         window=(0, 9)).start(transport)
        self.failureResultOf(d, DamagedEntry)
        self.assertEqual(transport.value(), b"")
