"""
Tests for L{netproxy.http.cache.writer}: what L{BodyWriter} does for every
store's writer (counting, checksumming and bounding a body, refusing use
after finish, waking those following it), driven through a writer that
keeps the body in a list.  How every store's writer behaves is part of the
store contract, in C{test_interfaces}.
"""

import zlib

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.entry import Entry
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.writer import BodyWriter
from tests.cache_helpers import KEY, META, TurnsMixin


class ListWriter(BodyWriter):
    """
    A writer keeping what it is given in C{kept}, and what it stored in
    C{committed}; C{store} says whether C{_commit} stores.
    """

    store = True

    def __init__(self, max_size, scheduler):
        super().__init__(KEY, META, max_size, scheduler)
        self.kept = []
        self.committed = []
        self.discarded = 0

    def _keep(self, data):
        self.kept.append(data)

    def _commit(self, entry):
        self.committed.append(entry)
        return entry if self.store else None

    def _discard(self):
        self.discarded += 1
        self.kept = []

    def reader(self):
        body = b"".join(self.kept)
        return (lambda offset, size: body[offset : offset + size]), (lambda: None)


class BodyWriterTests(TurnsMixin, SynchronousTestCase):
    """L{BodyWriter} through L{ListWriter}."""

    def setUp(self):
        super().setUp()
        self.writer = ListWriter(100, self.schedule)

    def test_counts_and_checksums(self):
        """finish commits an entry of the key, metadata, length and CRC-32 of what was written."""
        self.writer.write(b"hello ")
        self.writer.write(b"world")
        self.assertEqual(self.writer.written, 11)
        entry = self.writer.finish()
        self.assertEqual(entry, Entry(KEY, META, 11, zlib.crc32(b"hello world")))
        self.assertEqual((self.writer.kept, self.writer.committed), ([b"hello ", b"world"], [entry]))
        self.assertTrue(self.writer.complete)
        self.assertFalse(self.writer.abandoned)

    def test_too_large(self):
        """A body past max_size is discarded at once; later writes and finish keep nothing."""
        self.writer.write(b"x" * 60)
        self.writer.write(b"x" * 41)
        self.assertEqual((self.writer.kept, self.writer.discarded), ([], 1))
        self.assertTrue(self.writer.abandoned)
        self.writer.write(b"more")
        self.assertIsNone(self.writer.finish())
        self.assertEqual((self.writer.kept, self.writer.committed), ([], []))

    def test_exactly_max_size(self):
        """A body of exactly max_size is kept."""
        self.writer.write(b"x" * 100)
        self.assertEqual(self.writer.finish().length, 100)

    def test_not_stored(self):
        """A body its store did not keep is neither complete nor followed as such: it is abandoned."""
        self.writer.store = False
        self.writer.write(b"body")
        self.assertIsNone(self.writer.finish())
        self.assertFalse(self.writer.complete)
        self.assertTrue(self.writer.abandoned)

    def test_abort_once(self):
        """abort discards once, however often it is called, and finish then stores nothing."""
        self.writer.write(b"body")
        self.writer.abort()
        self.writer.abort()
        self.assertEqual(self.writer.discarded, 1)
        self.assertIsNone(self.writer.finish())
        self.assertEqual(self.writer.committed, [])

    def test_use_after_finish(self):
        """Writing to or finishing a finished writer raises RuntimeError."""
        self.writer.finish()
        self.assertRaises(RuntimeError, self.writer.write, b"x")
        self.assertRaises(RuntimeError, self.writer.finish)

    def test_follow_uses_given_scheduler(self):
        """Those following stream with the scheduler the writer was given."""
        clock = Clock()
        writer = ListWriter(100, next_turn(clock))
        writer.write(b"body")
        transport = StringTransport()
        d = writer.follow(transport)
        self.assertEqual(self.run_turns(), 0)
        clock.advance(0)
        self.assertEqual(transport.value(), b"body")
        writer.finish()
        clock.advance(0)
        self.successResultOf(d)

    def test_wakes_followers(self):
        """Each write, finish and abort wakes those following."""
        woken = []

        class Tail:
            def wake(self):
                woken.append(True)

        self.writer.tails.append(Tail())
        self.writer.write(b"a")
        self.writer.finish()
        self.assertEqual(len(woken), 2)
        aborted = ListWriter(100, self.schedule)
        aborted.tails.append(Tail())
        aborted.abort()
        self.assertEqual(len(woken), 3)

    def test_hooks_declared(self):
        """The hooks a store's writer defines are declared by BodyWriter."""
        writer = BodyWriter(KEY, META, 100, self.schedule)
        self.assertRaises(NotImplementedError, writer._keep, b"x")
        self.assertRaises(NotImplementedError, writer._commit, Entry(KEY, META, 0, 0))
        self.assertRaises(NotImplementedError, writer._discard)
        self.assertRaises(NotImplementedError, writer.reader)
