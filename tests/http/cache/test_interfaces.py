"""
Tests for L{netproxy.http.cache.interfaces}: the contract of L{IStore} and
L{IWriter}, as one suite every store passes, run against
L{netproxy.http.cache.sqlite_store.SQLiteStore} and
L{netproxy.testing.MemoryStore}.  What only one store does is tested beside
it (C{test_sqlite_store}, C{tests.test_testing}).
"""

import zlib

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    BodyAbandoned,
    DamagedEntry,
    StreamStopped,
    encode_record,
)
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.sqlite_store import SQLiteStore
from netproxy.testing import MemoryStore
from tests.cache_helpers import (
    KEY,
    META,
    MiB,
    ClosedTransport,
    LosingTransport,
    PausingTransport,
    TurnsMixin,
    body_of,
)


class StoreTestsMixin(TurnsMixin):
    """
    The behaviour of every L{IStore}.  A subclass provides C{make_store},
    which builds a store with the given C{max_size} that takes the clock
    C{self.clock} as its reactor and streams with C{self.schedule}.
    """

    max_size = 8 * MiB

    def setUp(self):
        super().setUp()
        self.store = self.make_store(self.max_size)
        # Readers followers took from writers and did not release (see follow).
        self.unreleased = 0

    def sizes(self, *entries):
        return sum(entry.length + len(encode_record(entry)) for entry in entries)

    def test_interfaces(self):
        """The store provides IStore and its writers IWriter."""
        self.assertTrue(verifyObject(IStore, self.store))
        self.assertTrue(verifyObject(IWriter, self.store.writer(KEY, META)))

    def test_get_missing(self):
        """A key never stored is not found."""
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual((len(self.store), self.store.size), (0, 0))

    def test_round_trip(self):
        """A body written in pieces is found by get, with its meta, length and crc32, and read back whole."""
        body = body_of(10000)
        entry = self.put(KEY, body, piece=1000)
        self.assertEqual((entry.key, entry.meta, entry.length, entry.checksum), (KEY, META, 10000, zlib.crc32(body)))
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.fetch(entry), body)
        self.assertEqual(len(self.store), 1)

    def test_empty_body(self):
        """An empty body is stored and read back, and the read still completes."""
        entry = self.put(KEY, b"")
        self.assertEqual((entry.length, entry.checksum), (0, 0))
        self.assertEqual(self.fetch(self.store.get(KEY)), b"")

    def test_unfinished_invisible(self):
        """An entry being written is not visible before finish."""
        writer = self.store.writer(KEY, META)
        writer.write(b"partial")
        self.assertIsNone(self.store.get(KEY))
        writer.finish()
        self.assertIsNotNone(self.store.get(KEY))

    def test_meta_is_copied(self):
        """The store keeps its own copy of the metadata: changing the caller's dict changes nothing."""
        meta = {"headers": [["A", "1"]]}
        self.put(KEY, b"x", meta=meta)
        meta["headers"].append(["B", "2"])
        self.assertEqual(self.store.get(KEY).meta, {"headers": [["A", "1"]]})

    def test_meta_not_json(self):
        """Metadata that is not JSON is refused at finish with TypeError, and nothing is stored."""
        writer = self.store.writer(KEY, {"when": object()})
        writer.write(b"x")
        self.assertRaises(TypeError, writer.finish)
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.store.size, 0)

    def test_write_after_finish(self):
        """A writer used after finish raises RuntimeError: it is a bug in the caller."""
        writer = self.store.writer(KEY, META)
        writer.finish()
        self.assertRaises(RuntimeError, writer.write, b"x")
        self.assertRaises(RuntimeError, writer.finish)

    def test_streaming_producer(self):
        """read registers a push producer on the consumer and unregisters it before the Deferred fires."""
        entry = self.put(KEY, b"hello")
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.assertTrue(transport.streaming)
        self.assertIsNotNone(transport.producer)
        self.run_turns()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(transport.producer)

    def test_nothing_before_next_turn(self):
        """read writes nothing before the next turn, so the caller can write the response head after it returns."""
        entry = self.put(KEY, b"hello")
        transport = StringTransport()
        d = self.store.read(entry, transport)
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertNoResult(d)
        self.turn()
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\n\r\nhello")
        self.run_turns()
        self.successResultOf(d)

    def test_large_body_in_chunks(self):
        """A 1 MiB body reaches the consumer over 16 turns or more, never more than 64 KiB in one turn."""
        body = body_of(MiB)
        entry = self.put(KEY, body, piece=10000)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        sent, turns = [], 0
        while self.turns.getDelayedCalls():
            before = len(transport.value())
            self.turn()
            turns += 1
            sent.append(len(transport.value()) - before)
        self.assertGreaterEqual(turns, 16)
        self.assertLessEqual(max(sent), CHUNK_SIZE)
        self.assertEqual(transport.value(), body)
        self.successResultOf(d)

    def test_replace(self):
        """A second finish for a key replaces the entry, its body and its size."""
        self.put(KEY, body_of(3000))
        entry = self.put(KEY, body_of(500, seed=1), meta={"v": 2})
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.fetch(entry), body_of(500, seed=1))
        self.assertEqual((len(self.store), self.store.size), (1, self.sizes(entry)))

    def test_held_body(self):
        """A small body just stored is held in memory, checked, for sending at once."""
        entry = self.put(KEY, body_of(3000))
        self.assertEqual(self.store.held_body(entry), body_of(3000))

    def test_large_body_not_held(self):
        """A body larger than one chunk is never offered whole: it is streamed."""
        entry = self.put(KEY, body_of(CHUNK_SIZE + 1))
        self.assertIsNone(self.store.held_body(entry))

    def test_replaced_body_not_held(self):
        """An entry replaced since it was looked up does not get the new body."""
        old = self.put(KEY, body_of(3000))
        self.put(KEY, body_of(3000, seed=1))
        self.assertIsNone(self.store.held_body(old))

    def test_abort(self):
        """An aborted writer leaves nothing: no entry, no size, and finish then stores nothing."""
        writer = self.store.writer(KEY, META)
        writer.write(body_of(1000))
        writer.abort()
        self.assertIsNone(writer.finish())
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual((len(self.store), self.store.size), (0, 0))

    def test_abort_keeps_older(self):
        """Aborting a replacement keeps the entry it would have replaced."""
        entry = self.put(KEY, b"old")
        writer = self.store.writer(KEY, {"v": 2})
        writer.write(b"new")
        writer.abort()
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.fetch(entry), b"old")

    def test_concurrent_writers(self):
        """Two writers for one key, interleaved: the last to finish wins, with its own body intact."""
        first, second = self.store.writer(KEY, {"n": 1}), self.store.writer(KEY, {"n": 2})
        for i in range(3):
            first.write(b"a" * 100)
            second.write(b"b" * 50)
        second.finish()
        entry = first.finish()
        self.assertEqual(self.store.get(KEY).meta, {"n": 1})
        self.assertEqual(self.fetch(entry), b"a" * 300)
        self.assertEqual((len(self.store), self.store.size), (1, self.sizes(entry)))

    def test_remove(self):
        """remove deletes an entry and says whether there was one."""
        self.put(KEY, b"body")
        self.assertTrue(self.store.remove(KEY))
        self.assertIsNone(self.store.get(KEY))
        self.assertFalse(self.store.remove(KEY))
        self.assertEqual((len(self.store), self.store.size), (0, 0))

    def test_read_removed(self):
        """Reading an entry removed since it was looked up fails with DamagedEntry and writes nothing."""
        entry = self.put(KEY, b"body")
        self.store.remove(KEY)
        transport = StringTransport()
        self.failureResultOf(self.store.read(entry, transport), DamagedEntry)
        self.assertEqual((transport.value(), transport.producer), (b"", None))

    def test_read_window(self):
        """A window of a small (held) or large (file) body gives exactly its bytes, and unregisters."""
        for size in (5000, 3 * CHUNK_SIZE + 7):
            body = body_of(size)
            entry = self.put(KEY, body)
            for window in ((0, 0), (10, 99), (size - 500, size - 1)):
                transport = StringTransport()
                d = self.store.read(entry, transport, window)
                self.run_turns()
                self.assertIsNone(self.successResultOf(d))
                self.assertEqual((transport.value(), transport.producer),
                                 (body[window[0]:window[1] + 1], None), (size, window))

    def test_update_keeps_body(self):
        """update replaces the metadata and keeps the body."""
        body = body_of(5000)
        self.put(KEY, body)
        updated = self.store.update(KEY, {"status": 200, "revalidated": True})
        self.assertEqual(updated.meta, {"status": 200, "revalidated": True})
        self.assertEqual(self.store.get(KEY), updated)
        self.assertEqual(self.fetch(updated), body)
        self.assertEqual(self.store.size, self.sizes(updated))

    def test_update_missing(self):
        """update of a key with no entry stores nothing."""
        self.assertIsNone(self.store.update(KEY, META))
        self.assertIsNone(self.store.get(KEY))

    def test_size(self):
        """size counts each entry's body length plus its record's length."""
        entries = [self.put(b"key%d" % i, body_of(100 * i)) for i in range(5)]
        self.assertEqual(self.store.size, self.sizes(*entries))

    def fill(self):
        """
        Rebuild the store with room for three entries of 1000 bytes, and
        store a, b and c in that order.
        """
        entry = self.put(b"probe", body_of(1000))
        self.store = self.make_store(3 * self.sizes(entry) + 10)
        for key in (b"a", b"b", b"c"):
            self.clock.advance(1)
            self.put(key, body_of(1000))

    def test_lru_eviction(self):
        """Past max_size the least recently used entries are evicted first; get counts as use."""
        self.fill()
        self.store.get(b"a")
        self.put(b"d", body_of(1000))
        self.assertLessEqual(self.store.size, self.store.max_size)
        self.assertEqual([self.store.get(k) is not None for k in (b"a", b"b", b"c", b"d")], [True, False, True, True])

    def test_read_counts_as_use(self):
        """Reading an entry counts as a use for eviction."""
        self.fill()
        self.fetch(self.store.get(b"a"))
        self.fetch(self.store.get(b"c"))
        self.store.get(b"b")
        self.fetch(self.store.get(b"a"))
        self.put(b"d", body_of(1000))
        self.assertIsNone(self.store.get(b"c"))

    def test_eviction_of_several(self):
        """A large entry evicts as many old ones as needed to fit."""
        self.fill()
        self.assertEqual(self.store.evictions, 0)
        self.put(b"big", body_of(2000))
        self.assertEqual([self.store.get(k) is not None for k in (b"a", b"b", b"c")], [False, False, True])
        self.assertLessEqual(self.store.size, self.store.max_size)
        self.assertEqual(self.store.evictions, 2)

    def test_oversized_not_stored(self):
        """An entry larger than max_size is not stored and evicts nothing."""
        self.fill()
        size = self.store.size
        self.assertIsNone(self.put(KEY, body_of(self.store.max_size + 1)))
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual((len(self.store), self.store.size, self.store.evictions), (3, size, 0))

    def test_pause_resume(self):
        """A paused consumer gets nothing more, however many turns pass, until it resumes."""
        body = body_of(5 * CHUNK_SIZE)
        entry = self.put(KEY, body, piece=CHUNK_SIZE)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.turn()
        transport.producer.pauseProducing()
        received = len(transport.value())
        for _ in range(5):
            self.turn()
        self.assertEqual(len(transport.value()), received)
        self.assertNoResult(d)
        transport.producer.resumeProducing()
        self.run_turns()
        self.assertEqual(transport.value(), body)
        self.successResultOf(d)

    def test_stop_producing(self):
        """stopProducing stops reading and fails the Deferred with StreamStopped."""
        entry = self.put(KEY, body_of(5 * CHUNK_SIZE), piece=CHUNK_SIZE)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.turn()
        transport.producer.stopProducing()
        received = len(transport.value())
        self.failureResultOf(d, StreamStopped)
        self.assertEqual(self.run_turns(), 0)
        self.assertEqual(len(transport.value()), received)
        self.assertEqual(self.store.get(KEY), entry)

    def test_stop_while_paused(self):
        """A paused stream can be stopped."""
        entry = self.put(KEY, body_of(3 * CHUNK_SIZE), piece=CHUNK_SIZE)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        transport.producer.pauseProducing()
        transport.producer.stopProducing()
        self.failureResultOf(d, StreamStopped)
        self.assertEqual((self.run_turns(), transport.value()), (0, b""))

    def test_paused_from_within_write(self):
        """A consumer that pauses the producer from within write gets one chunk per resume."""
        body = body_of(3 * CHUNK_SIZE)
        entry = self.put(KEY, body, piece=CHUNK_SIZE)
        transport = PausingTransport()
        d = self.store.read(entry, transport)
        for received in (1, 2, 3):
            self.run_turns()
            self.assertEqual(len(transport.value()), received * CHUNK_SIZE)
            self.assertNoResult(d)
            transport.producer.resumeProducing()
        self.run_turns()
        self.assertEqual(transport.value(), body)
        self.successResultOf(d)

    def test_stopped_from_within_write(self):
        """A consumer stopping the producer from within write, even the last, fails the read with StreamStopped."""
        for size, lost in [(10, 10), (2 * CHUNK_SIZE + 1, CHUNK_SIZE), (2 * CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1)]:
            entry = self.put(KEY, body_of(size), piece=CHUNK_SIZE)
            transport = LosingTransport(lost)
            d = self.store.read(entry, transport)
            self.run_turns()
            self.failureResultOf(d, StreamStopped)
            self.assertEqual(len(transport.value()), lost)

    def test_consumer_already_closed(self):
        """A consumer stopping the producer as it is registered gets nothing; the read fails with StreamStopped."""
        entry = self.put(KEY, body_of(3 * CHUNK_SIZE), piece=CHUNK_SIZE)
        transport = ClosedTransport()
        self.failureResultOf(self.store.read(entry, transport), StreamStopped)
        self.assertEqual((self.run_turns(), transport.value()), (0, b""))

    def test_cancel(self):
        """Cancelling the Deferred stops the stream and unregisters the producer."""
        entry = self.put(KEY, body_of(3 * CHUNK_SIZE), piece=CHUNK_SIZE)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.turn()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(transport.producer)
        self.assertEqual((self.run_turns(), len(transport.value())), (0, CHUNK_SIZE))

    def test_read_survives_replacement(self):
        """A body being streamed is sent whole even if its entry is replaced meanwhile."""
        body = body_of(4 * CHUNK_SIZE)
        entry = self.put(KEY, body, piece=CHUNK_SIZE)
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.turn()
        replacement = self.put(KEY, b"new body")
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)
        self.assertEqual(self.store.get(KEY), replacement)

    def test_read_replaced(self):
        """Reading a version replaced since it was looked up fails with DamagedEntry, and keeps the new one."""
        for old, new in [(b"old body", b"new"), (b"old body", b"new body")]:
            entry = self.put(KEY, old)
            replacement = self.put(KEY, new)
            transport = StringTransport()
            self.failureResultOf(self.store.read(entry, transport), DamagedEntry)
            self.assertEqual((transport.value(), transport.producer), (b"", None))
            self.assertEqual(self.store.get(KEY), replacement)
            self.assertEqual(self.fetch(replacement), new)

    def test_two_readers(self):
        """Two consumers reading one entry at once each get the whole body."""
        body = body_of(3 * CHUNK_SIZE + 5)
        entry = self.put(KEY, body, piece=CHUNK_SIZE)
        one, two = StringTransport(), StringTransport()
        reads = [self.store.read(entry, one), self.store.read(entry, two)]
        self.run_turns()
        self.assertEqual([self.successResultOf(d) for d in reads], [None, None])
        self.assertEqual((one.value(), two.value()), (body, body))

    def follow(self, writer, consumer):
        """
        Follow C{writer}'s body to C{consumer}, counting in
        C{self.unreleased} the readers taken from the writer and not yet
        released (see L{assert_released}).
        """
        if "reader" not in vars(writer):
            reader = writer.reader

            def counted():
                read, release = reader()
                self.unreleased += 1

                def counted_release():
                    self.unreleased -= 1
                    release()

                return read, counted_release

            writer.reader = counted
        return writer.follow(consumer)

    def assert_released(self, writer):
        """Assert that nothing follows C{writer} any more, and every reader taken from it was released."""
        self.assertEqual(writer.tails, [])
        self.assertEqual(self.unreleased, 0)

    def test_follow_from_start(self):
        """A body followed from the start arrives on the turn after each write; the Deferred fires only after finish."""
        body = body_of(5000)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        self.assertTrue(transport.streaming)
        self.assertIsNotNone(transport.producer)
        self.run_turns()
        self.assertEqual(transport.value(), b"")
        for start in range(0, len(body), 1000):
            writer.write(body[start : start + 1000])
            self.assertEqual(transport.value(), body[:start])
            self.turn()
            self.assertEqual(transport.value(), body[: start + 1000])
            # Caught up, the follower waits for the writer without taking turns.
            self.assertLessEqual(self.run_turns(), 1)
            self.assertNoResult(d)
        self.assertEqual(transport.value(), body)
        entry = writer.finish()
        self.assertNoResult(d)
        self.run_turns()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(transport.value(), body)
        self.assertIsNone(transport.producer)
        self.assertEqual(self.store.get(KEY), entry)
        self.assert_released(writer)

    def test_follow_after_writes(self):
        """A late follower gets what was written so far first, a chunk per turn from the next turn, then the rest."""
        body = body_of(3 * CHUNK_SIZE)
        early = 2 * CHUNK_SIZE + 100
        writer = self.store.writer(KEY, META)
        writer.write(body[:early])
        transport = StringTransport()
        d = self.follow(writer, transport)
        self.assertEqual(transport.value(), b"")
        for received in (CHUNK_SIZE, 2 * CHUNK_SIZE, early):
            self.turn()
            self.assertEqual(transport.value(), body[:received])
        writer.write(body[early:])
        writer.finish()
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)
        self.assert_released(writer)

    def test_follow_large_write_in_chunks(self):
        """A body of several chunks written in one go reaches a follower at most one chunk per turn."""
        body = body_of(5 * CHUNK_SIZE + 7)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        self.run_turns()
        writer.write(body)
        writer.finish()
        sent = []
        while self.turns.getDelayedCalls():
            before = len(transport.value())
            self.turn()
            sent.append(len(transport.value()) - before)
        self.assertGreaterEqual(len(sent), 6)
        self.assertLessEqual(max(sent), CHUNK_SIZE)
        self.assertEqual(transport.value(), body)
        self.successResultOf(d)
        self.assert_released(writer)

    def test_follow_pause_resume(self):
        """A paused follower gets nothing, caught up or behind, however much is written, until it resumes."""
        body = body_of(4 * CHUNK_SIZE)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(body[:1000])
        self.run_turns()
        # Caught up and waiting.
        transport.producer.pauseProducing()
        writer.write(body[1000:CHUNK_SIZE])
        for _ in range(3):
            self.turn()
        self.assertEqual(transport.value(), body[:1000])
        transport.producer.resumeProducing()
        self.turn()
        self.assertEqual(transport.value(), body[:CHUNK_SIZE])
        # Behind the writer.
        writer.write(body[CHUNK_SIZE:])
        self.turn()
        transport.producer.pauseProducing()
        writer.finish()
        for _ in range(5):
            self.turn()
        self.assertEqual(transport.value(), body[: 2 * CHUNK_SIZE])
        self.assertNoResult(d)
        transport.producer.resumeProducing()
        self.run_turns()
        self.assertEqual(transport.value(), body)
        self.successResultOf(d)
        self.assert_released(writer)

    def test_follow_paused_from_within_write(self):
        """A follower whose consumer pauses it from within write gets one chunk per resume."""
        body = body_of(3 * CHUNK_SIZE + 5)
        writer = self.store.writer(KEY, META)
        transport = PausingTransport()
        d = self.follow(writer, transport)
        writer.write(body)
        writer.finish()
        for received in (CHUNK_SIZE, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE, len(body)):
            self.run_turns()
            self.assertEqual(transport.value(), body[:received])
            self.assertNoResult(d)
            transport.producer.resumeProducing()
        self.run_turns()
        self.successResultOf(d)
        self.assert_released(writer)

    def test_follow_two_paces(self):
        """Two followers, one keeping up with the writer and one slower and later, each get the whole body."""
        body = body_of(6 * CHUNK_SIZE + 1234)
        piece = CHUNK_SIZE
        writer = self.store.writer(KEY, META)
        fast, slow = StringTransport(), PausingTransport()
        fast_done = self.follow(writer, fast)
        slow_done = None
        for i, start in enumerate(range(0, len(body), piece)):
            writer.write(body[start : start + piece])
            if slow_done is None:
                slow_done = self.follow(writer, slow)
            self.turn()
            if i % 3 == 2:
                slow.producer.resumeProducing()
        self.assertEqual(len(writer.tails), 2)
        writer.finish()
        self.run_turns()
        self.successResultOf(fast_done)
        self.assertEqual(fast.value(), body)
        self.assertLess(len(slow.value()), len(body))
        self.assertNoResult(slow_done)
        while slow.producer is not None:
            slow.producer.resumeProducing()
            self.run_turns()
        self.successResultOf(slow_done)
        self.assertEqual(slow.value(), body)
        self.assert_released(writer)

    def test_follow_abort(self):
        """A writer aborted while followed fails the follower with BodyAbandoned and unregisters its producer."""
        body = body_of(1000)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(body)
        self.run_turns()
        writer.abort()
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(transport.value(), body)
        self.assertIsNone(transport.producer)
        self.assert_released(writer)
        self.assertIsNone(writer.finish())

    def test_follow_abort_behind(self):
        """A follower behind an aborted writer sends no more of what was written: it fails with BodyAbandoned."""
        writer = self.store.writer(KEY, META)
        writer.write(body_of(3 * CHUNK_SIZE))
        transport = StringTransport()
        d = self.follow(writer, transport)
        self.turn()
        writer.abort()
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(len(transport.value()), CHUNK_SIZE)
        self.assertIsNone(transport.producer)
        self.assert_released(writer)

    def test_follow_too_large(self):
        """A body growing past max_size while followed fails the follower with BodyAbandoned; nothing is stored."""
        self.store = self.make_store(3 * CHUNK_SIZE)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(body_of(2 * CHUNK_SIZE))
        self.run_turns()
        writer.write(body_of(CHUNK_SIZE + 1))
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(transport.value(), body_of(2 * CHUNK_SIZE))
        self.assertIsNone(transport.producer)
        self.assert_released(writer)
        self.assertIsNone(writer.finish())
        self.assertIsNone(self.store.get(KEY))

    def test_follow_not_stored(self):
        """A body that fits max_size but not with its record is not stored: its follower fails with BodyAbandoned."""
        self.store = self.make_store(1000)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(body_of(1000))
        self.run_turns()
        self.assertIsNone(writer.finish())
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(transport.value(), body_of(1000))
        self.assertIsNone(transport.producer)
        self.assert_released(writer)

    def test_follow_finish_raises(self):
        """A follower waiting when finish raises (metadata not JSON) fails with BodyAbandoned, not waits forever."""
        writer = self.store.writer(KEY, {"when": object()})
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(b"body")
        self.run_turns()
        self.assertRaises(TypeError, writer.finish)
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(transport.value(), b"body")
        self.assertIsNone(transport.producer)
        self.assert_released(writer)

    def test_follow_stop_producing(self):
        """A consumer stopping a follower fails it with StreamStopped at once; the writer still stores the body."""
        body = body_of(3 * CHUNK_SIZE)
        for behind in (True, False):
            self.store.remove(KEY)
            writer = self.store.writer(KEY, META)
            transport = StringTransport()
            d = self.follow(writer, transport)
            writer.write(body[: 2 * CHUNK_SIZE])
            self.turn()
            if not behind:
                self.run_turns()
            received = len(transport.value())
            self.assertEqual(received, CHUNK_SIZE if behind else 2 * CHUNK_SIZE)
            transport.producer.stopProducing()
            self.failureResultOf(d, StreamStopped)
            self.assert_released(writer)
            writer.write(body[2 * CHUNK_SIZE :])
            entry = writer.finish()
            self.assertEqual(self.run_turns(), 0)
            self.assertEqual(len(transport.value()), received)
            self.assertEqual(self.fetch(entry), body)

    def test_follow_stopped_from_within_write(self):
        """A consumer stopping the follower from within write, even the last, fails it with StreamStopped."""
        for size, lost in [(10, 10), (2 * CHUNK_SIZE + 1, CHUNK_SIZE), (2 * CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1)]:
            writer = self.store.writer(KEY, META)
            transport = LosingTransport(lost)
            d = self.follow(writer, transport)
            writer.write(body_of(size))
            writer.finish()
            self.run_turns()
            self.failureResultOf(d, StreamStopped)
            self.assertEqual(len(transport.value()), lost)
            self.assert_released(writer)

    def test_follow_consumer_already_closed(self):
        """A consumer stopping the follower as it is registered gets nothing; follow fails with StreamStopped."""
        writer = self.store.writer(KEY, META)
        writer.write(b"body")
        transport = ClosedTransport()
        self.failureResultOf(self.follow(writer, transport), StreamStopped)
        self.assert_released(writer)
        writer.write(b" and more")
        writer.finish()
        self.assertEqual((self.run_turns(), transport.value()), (0, b""))

    def test_follow_cancel(self):
        """Cancelling a follower, caught up or behind, stops it and unregisters its producer; the writer goes on."""
        for behind in (True, False):
            self.store.remove(KEY)
            writer = self.store.writer(KEY, META)
            transport = StringTransport()
            d = self.follow(writer, transport)
            writer.write(body_of(2 * CHUNK_SIZE))
            self.turn()
            if not behind:
                self.run_turns()
            received = len(transport.value())
            d.cancel()
            self.failureResultOf(d, CancelledError)
            self.assertIsNone(transport.producer)
            self.assert_released(writer)
            writer.write(b"more")
            self.assertEqual(writer.finish().length, 2 * CHUNK_SIZE + 4)
            self.assertEqual((self.run_turns(), len(transport.value())), (0, received))

    def test_follow_abandoned_writer(self):
        """Following a writer aborted or past max_size fails at once with BodyAbandoned, registering nothing."""
        self.store = self.make_store(1000)
        aborted = self.store.writer(KEY, META)
        aborted.write(b"body")
        aborted.abort()
        oversized = self.store.writer(KEY, META)
        oversized.write(body_of(1001))
        for writer in (aborted, oversized):
            transport = StringTransport()
            self.failureResultOf(self.follow(writer, transport), BodyAbandoned)
            self.assertEqual((transport.value(), transport.producer), (b"", None))
            self.assert_released(writer)
            self.assertEqual(self.run_turns(), 0)

    def test_follow_empty_body(self):
        """A followed writer finishing with no body completes its follower with nothing written."""
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        self.run_turns()
        self.assertNoResult(d)
        writer.finish()
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.assert_released(writer)

    def test_follow_replaced(self):
        """A follower gets its writer's body even when another writer for the key finishes first, or after."""
        body = body_of(3 * CHUNK_SIZE)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = self.follow(writer, transport)
        writer.write(body[:CHUNK_SIZE])
        self.turn()
        self.put(KEY, b"another body")
        writer.write(body[CHUNK_SIZE:])
        entry = writer.finish()
        self.turn()
        self.put(KEY, b"a third body")
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)
        self.assertEqual(entry.length, len(body))
        self.assertEqual(self.fetch(self.store.get(KEY)), b"a third body")
        self.assert_released(writer)


class MemoryStoreTests(StoreTestsMixin, SynchronousTestCase):
    """The shared store tests, run against L{MemoryStore}."""

    def make_store(self, max_size):
        return MemoryStore(max_size, scheduler=self.schedule)


class SQLiteStoreTests(StoreTestsMixin, SynchronousTestCase):
    """The shared store tests, run against L{SQLiteStore}."""

    def make_store(self, max_size):
        store = SQLiteStore(FilePath(self.mktemp()), max_size, self.clock, scheduler=self.schedule)
        self.addCleanup(store.close)
        return store


class SharedSQLiteStoreTests(StoreTestsMixin, SynchronousTestCase):
    """The shared store tests, run against L{SQLiteStore} made to share its directory."""

    def make_store(self, max_size):
        store = SQLiteStore(FilePath(self.mktemp()), max_size, self.clock, scheduler=self.schedule, shared=True)
        self.addCleanup(store.close)
        return store


class VerifyTests(SynchronousTestCase):
    """Each store, and each store's writer, provides its interface."""

    def stores(self):
        """:returns: a store of each kind."""
        clock = Clock()
        return [SQLiteStore(FilePath(self.mktemp()), MiB, clock), MemoryStore(MiB, next_turn(clock))]

    def test_stores(self):
        """SQLiteStore and MemoryStore provide IStore."""
        for store in self.stores():
            self.assertTrue(verifyObject(IStore, store), store)

    def test_writers(self):
        """The writers of SQLiteStore and MemoryStore provide IWriter, before and after finish."""
        for store in self.stores():
            writer = store.writer(KEY, META)
            self.assertTrue(verifyObject(IWriter, writer), writer)
            writer.write(b"body")
            writer.finish()
            self.assertTrue(verifyObject(IWriter, writer), writer)
