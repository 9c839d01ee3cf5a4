"""
Tests for L{netproxy.http.cache.following}: a body followed as it is
written, driven through a fake writer.  How every store's writer is
followed is part of the store contract, in C{test_interfaces}.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.entry import CHUNK_SIZE, BodyAbandoned
from netproxy.http.cache.following import BodyTail
from tests.cache_helpers import TurnsMixin, body_of


class FakeWriter:
    """
    What a L{BodyTail} follows, as a test sets it: a body in C{data}, and
    C{reader} giving reads of it (or raising C{error}).
    """

    def __init__(self, data=b"", complete=False, abandoned=False, error=None, short=False):
        self.data = data
        self.complete = complete
        self.abandoned = abandoned
        self.error = error
        self.short = short
        self.tails = []
        self.released = 0

    @property
    def written(self):
        return len(self.data)

    def reader(self):
        if self.error is not None:
            raise self.error

        def read(offset, size):
            return b"" if self.short else self.data[offset : offset + size]

        def release():
            self.released += 1

        return read, release


class BodyTailTests(TurnsMixin, SynchronousTestCase):
    """L{BodyTail}, following a fake writer."""

    def follow(self, writer):
        """:returns: a new transport following C{writer}, and the L{Deferred}."""
        transport = StringTransport()
        return transport, BodyTail(writer, self.schedule).start(transport)

    def test_follows_and_completes(self):
        """What was written is sent, then each new piece once woken, until the writer completes."""
        writer = FakeWriter(b"abc")
        transport, d = self.follow(writer)
        self.assertEqual(writer.tails, [transport.producer])
        self.run_turns()
        self.assertEqual(transport.value(), b"abc")
        writer.data += b"def"
        self.assertEqual(self.run_turns(), 0)
        writer.complete = True
        for tail in writer.tails:
            tail.wake()
        self.run_turns()
        self.assertEqual(transport.value(), b"abcdef")
        self.successResultOf(d)
        self.assertEqual((writer.tails, writer.released), ([], 1))

    def test_wake_when_not_waiting(self):
        """Waking a follower that is not waiting does nothing."""
        writer = FakeWriter(body_of(2 * CHUNK_SIZE))
        transport, d = self.follow(writer)
        writer.tails[0].wake()
        self.turn()
        self.assertEqual(len(transport.value()), CHUNK_SIZE)

    def test_abandoned_writer(self):
        """Following an abandoned writer fails at once with BodyAbandoned, registering nothing."""
        transport, d = self.follow(FakeWriter(abandoned=True))
        self.failureResultOf(d, BodyAbandoned)
        self.assertIsNone(transport.producer)

    def test_unreadable(self):
        """A writer whose body cannot be read fails the follower at once with BodyAbandoned."""
        writer = FakeWriter(b"abc", error=FileNotFoundError(2, "No such file"))
        transport, d = self.follow(writer)
        self.assertIn("cannot be read", str(self.failureResultOf(d, BodyAbandoned).value))
        self.assertEqual(writer.tails, [])

    def test_shorter_than_written(self):
        """A body that reads shorter than written fails the follower with BodyAbandoned, and is released."""
        writer = FakeWriter(b"abc", short=True)
        transport, d = self.follow(writer)
        self.run_turns()
        self.assertIn("shorter than written", str(self.failureResultOf(d, BodyAbandoned).value))
        self.assertEqual((writer.tails, writer.released), ([], 1))
