"""
Tests for L{netproxy.http.cache.file_store}: what only the store on disk
does (its files, crash safety, damage checks, loading at start-up and
memory cache).  The store contract it shares with every store is tested in
C{test_interfaces}.
"""

import base64
import errno
import gc
import io
import os
import tracemalloc

from twisted.internet.defer import CancelledError
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import EntryNotRemoved
from netproxy.http.cache.entry import CHUNK_SIZE, BodyAbandoned, DamagedEntry, StreamStopped, decode_record
from netproxy.http.cache.file_layout import file_name
from netproxy.http.cache.file_store import FileStore
from tests.cache_helpers import KEY, META, MiB, TurnsMixin, body_of


class OpenCounter:
    """
    Counts the files L{FilePath} opens (for reading records and bodies, and
    for writing).
    """

    def __init__(self, case):
        self.count = 0
        real = FilePath.open

        def counting(path, mode="r"):
            self.count += 1
            return real(path, mode)

        case.patch(FilePath, "open", counting)


class FileStoreOnDiskTests(TurnsMixin, SynchronousTestCase):
    """What only L{FileStore} does: its files, crash safety, damage checks, loading and memory cache."""

    def setUp(self):
        super().setUp()
        self.path = FilePath(self.mktemp())
        self.reopen()

    def reopen(self, max_size=64 * MiB, memory_size=32 * MiB):
        """A new store on the same directory, as after a restart."""
        self.store = FileStore(self.path, max_size, self.clock, memory_size=memory_size, scheduler=self.schedule)
        return self.store

    def load(self):
        """Run the store's load to its end."""
        d = self.store.load()
        self.run_turns()
        self.successResultOf(d)

    def files(self):
        """:returns: the paths of the files in the cache directory, relative to it."""
        return sorted("/".join(p.segmentsFrom(self.path)) for p in self.path.walk() if p.isfile())

    def file(self, key, suffix):
        name = file_name(key)
        return self.path.child(name[:2]).child(name + suffix)

    def test_file_names(self):
        """Files are named after the key's SHA-256, sharded by its first two hex digits; no URL text is on disk."""
        self.put(KEY, b"body")
        name = file_name(KEY)
        self.assertEqual(self.files(), [f"{name[:2]}/{name}.body", f"{name[:2]}/{name}.meta"])
        self.assertEqual(len(name), 64)
        record = self.file(KEY, ".meta").getContent()
        self.assertNotIn(b"example.com", record)
        self.assertEqual(decode_record(record).key, KEY)
        self.assertIn(base64.b64encode(KEY), record)

    def test_writer_uses_temporary_file(self):
        """A body being written goes to a .tmp file, renamed into place by finish."""
        writer = self.store.writer(KEY, META)
        writer.write(b"partial")
        [temp] = self.files()
        self.assertTrue(temp.endswith(".tmp"))
        writer.finish()
        self.assertFalse(any(name.endswith(".tmp") for name in self.files()))

    def test_abort_removes_temporary_file(self):
        """An aborted writer's temporary file is deleted."""
        writer = self.store.writer(KEY, META)
        writer.write(b"partial")
        writer.abort()
        self.assertEqual(self.files(), [])

    def test_oversized_write_drops_file(self):
        """A body growing past max_size has its temporary file deleted at once."""
        self.reopen(max_size=1000)
        writer = self.store.writer(KEY, META)
        writer.write(body_of(1001))
        self.assertEqual(self.files(), [])
        writer.write(b"more")
        self.assertIsNone(writer.finish())
        self.assertEqual(self.files(), [])

    def test_writer_streams_to_disk(self):
        """A writer puts the body on disk as it is written, holding no more than a buffer in memory."""
        writer = self.store.writer(KEY, META)
        written = 0
        for _ in range(64):
            writer.write(body_of(4096))
            written += 4096
        [temp] = self.files()
        self.assertGreaterEqual(self.path.preauthChild(temp).getsize(), written - io.DEFAULT_BUFFER_SIZE)
        writer.finish()

    def test_disk_full(self):
        """A write error (disk full) abandons the entry and its temporary file; the old entry stays."""
        old = self.put(KEY, b"old")
        real = FilePath.open

        class Full:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def close(self):
                self.f.close()

        def full(path, mode="r"):
            f = real(path, mode)
            return Full(f) if path.path.endswith(".body.tmp") else f

        self.patch(FilePath, "open", full)
        writer = self.store.writer(KEY, {"v": 2})
        writer.write(b"new")
        self.assertIsNone(writer.finish())
        self.assertFalse(any(name.endswith(".tmp") for name in self.files()))
        self.assertEqual(self.store.get(KEY), old)

    def test_persists_after_load(self):
        """A new store on the same directory serves the entries once loaded, with the same size."""
        entries = [self.put(b"key%d" % i, body_of(1000 * i, seed=i)) for i in range(10)]
        size = self.store.size
        self.reopen()
        self.load()
        self.assertEqual((len(self.store), self.store.size), (10, size))
        for i, entry in enumerate(entries):
            self.assertEqual(self.store.get(entry.key), entry)
            self.assertEqual(self.fetch(entry), body_of(1000 * i, seed=i))

    def test_persists_before_load(self):
        """A new store finds an entry on disk before load has run."""
        entry = self.put(KEY, body_of(3 * CHUNK_SIZE))
        self.reopen()
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.fetch(entry), body_of(3 * CHUNK_SIZE))
        self.assertIsNone(self.store.get(b"other"))

    def test_get_before_load_counted_once(self):
        """An entry found before load reached it is accounted once."""
        entry = self.put(KEY, b"body")
        self.put(b"other", b"more")
        size = self.store.size
        self.reopen()
        self.store.get(KEY)
        self.load()
        self.assertEqual((len(self.store), self.store.size), (2, size))
        self.assertEqual(self.store.get(KEY), entry)

    def test_update_persists(self):
        """Updated metadata survives a restart, with the body unchanged."""
        self.put(KEY, b"body")
        self.store.update(KEY, {"v": 2})
        self.reopen()
        self.assertEqual(self.store.get(KEY).meta, {"v": 2})
        self.assertEqual(self.fetch(self.store.get(KEY)), b"body")

    def test_remove_before_load(self):
        """An entry not yet scanned can be removed, and its files are deleted."""
        self.put(KEY, b"body")
        self.reopen()
        self.assertTrue(self.store.remove(KEY))
        self.assertEqual(self.files(), [])
        self.assertFalse(self.store.remove(KEY))

    def test_eviction_deletes_files(self):
        """An evicted entry's files are deleted."""
        self.reopen(max_size=3000)
        self.put(b"a", body_of(1000))
        self.clock.advance(1)
        self.put(b"b", body_of(2000))
        self.assertIsNone(self.store.get(b"a"))
        name = file_name(b"b")
        self.assertEqual(self.files(), [f"{name[:2]}/{name}.body", f"{name[:2]}/{name}.meta"])

    def test_lru_order_persists(self):
        """The order of use survives a restart, through the records' mtimes."""
        for key in (b"a", b"b", b"c"):
            self.put(key, body_of(1000))
            self.clock.advance(10)
        self.clock.advance(60)
        self.store.get(b"a")
        size = self.store.size
        self.reopen(max_size=size - 1)
        self.load()
        self.assertEqual([self.store.get(k) is not None for k in (b"a", b"b", b"c")], [True, False, True])

    def test_touch_is_coarse(self):
        """A hit sets the record's mtime to its time, at most once a minute."""
        self.put(KEY, b"body")
        record = self.file(KEY, ".meta")
        self.clock.advance(30)
        self.store.get(KEY)
        record.changed()
        self.assertEqual(record.getModificationTime(), 0)
        self.clock.advance(30)
        self.store.get(KEY)
        record.changed()
        self.assertEqual(record.getModificationTime(), 60)

    def test_damaged_small_body(self):
        """A small body with a flipped byte fails with DamagedEntry before anything is written, and is removed."""
        self.put(KEY, b"0123456789")
        self.reopen()
        body = self.file(KEY, ".body")
        body.setContent(b"0123456789".replace(b"5", b"X"))
        entry = self.store.get(KEY)
        transport = StringTransport()
        self.failureResultOf(self.store.read(entry, transport), DamagedEntry)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.files(), [])
        self.assertEqual((len(self.store), self.store.size), (0, 0))

    def test_damaged_large_body(self):
        """A large body with a flipped byte fails with DamagedEntry at its end, last chunk held back; it is removed."""
        data = body_of(3 * CHUNK_SIZE)
        entry = self.put(KEY, data)
        path = self.file(KEY, ".body")
        with open(path.path, "r+b") as f:
            f.seek(CHUNK_SIZE + 10)
            f.write(b"\xff" if data[CHUNK_SIZE + 10] != 0xFF else b"\x00")
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.run_turns()
        self.failureResultOf(d, DamagedEntry)
        self.assertEqual(len(transport.value()), 2 * CHUNK_SIZE)
        self.assertIsNone(transport.producer)
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.files(), [])

    def test_truncated_body(self):
        """A truncated body fails with DamagedEntry before anything is written."""
        entry = self.put(KEY, body_of(3 * CHUNK_SIZE))
        path = self.file(KEY, ".body")
        with open(path.path, "r+b") as f:
            f.truncate(CHUNK_SIZE * 2)
        transport = StringTransport()
        self.failureResultOf(self.store.read(entry, transport), DamagedEntry)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.assertIsNone(self.store.get(KEY))

    def test_body_renamed_record_not(self):
        """A crash between the body's and the record's renames (old record, new body) is never served."""
        self.put(KEY, b"old body")
        self.reopen()
        self.file(KEY, ".body").setContent(b"new body")
        entry = self.store.get(KEY)
        self.failureResultOf(self.store.read(entry, StringTransport()), DamagedEntry)
        self.assertIsNone(self.store.get(KEY))

    def test_body_without_record(self):
        """A body without a record is not found, and load deletes it."""
        self.put(KEY, b"body")
        self.file(KEY, ".meta").remove()
        self.reopen()
        self.assertIsNone(self.store.get(KEY))
        self.load()
        self.assertEqual(self.files(), [])

    def test_record_without_body(self):
        """A record without a body is deleted by load, and a read of it fails with DamagedEntry."""
        self.put(KEY, b"body")
        self.put(b"other", b"body")
        self.file(KEY, ".body").remove()
        self.file(b"other", ".body").remove()
        self.reopen()
        entry = self.store.get(b"other")
        self.failureResultOf(self.store.read(entry, StringTransport()), DamagedEntry)
        self.load()
        self.assertEqual(self.files(), [])
        self.assertEqual(len(self.store), 0)

    def test_leftover_temporary_files(self):
        """load deletes temporary files left by a crash, but not those of writers at work."""
        self.put(KEY, b"body")
        self.file(KEY, ".body").sibling("crashed" + file_name(KEY) + ".body.tmp").setContent(b"partial")
        self.file(KEY, ".meta").sibling("crashed" + file_name(KEY) + ".meta.tmp").setContent(b"{")
        self.reopen()
        writer = self.store.writer(b"busy", META)
        writer.write(b"partial")
        self.load()
        self.assertEqual(len([name for name in self.files() if name.endswith(".tmp")]), 1)
        writer.write(b" and the rest")
        self.assertEqual(writer.finish().length, 20)
        self.assertEqual(self.fetch(self.store.get(b"busy")), b"partial and the rest")

    def test_invalid_record(self):
        """An entry whose record is not valid JSON is not found, and its files are deleted."""
        self.put(KEY, b"body")
        self.reopen()
        self.file(KEY, ".meta").setContent(b'{"version": 1, "key": ')
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.files(), [])

    def test_record_of_another_key(self):
        """A record naming another key than its file's is not served."""
        self.put(KEY, b"body")
        self.put(b"other", b"body")
        self.reopen()
        self.file(KEY, ".meta").setContent(self.file(b"other", ".meta").getContent())
        self.assertIsNone(self.store.get(KEY))

    def test_load_in_turns(self):
        """load of 2,000 entries takes many turns, during which get already works; then len and size are right."""
        keys = [b"https://example.com/%d" % i for i in range(2000)]
        for key in keys:
            self.put(key, key)
        size = self.store.size
        self.reopen()
        d = self.store.load()
        self.turn()
        self.assertNoResult(d)
        self.assertEqual(self.store.get(keys[-1]).length, len(keys[-1]))
        turns = 1 + self.run_turns()
        self.successResultOf(d)
        self.assertGreater(turns, 10)
        self.assertEqual((len(self.store), self.store.size), (2000, size))

    def test_load_evicts(self):
        """load evicts the least recently used entries when the directory holds more than max_size."""
        for i in range(4):
            self.put(b"key%d" % i, body_of(1000))
            self.clock.advance(10)
        self.reopen(max_size=self.store.size // 2)
        self.load()
        self.assertEqual([self.store.get(b"key%d" % i) is not None for i in range(4)], [False, False, True, True])
        self.assertLessEqual(self.store.size, self.store.max_size)

    def test_hot_entry_no_file_io(self):
        """A small entry, once read, is served again with no file opened."""
        self.put(KEY, body_of(1000))
        self.reopen()
        opens = OpenCounter(self)
        self.assertEqual(self.fetch(self.store.get(KEY)), body_of(1000))
        self.assertEqual(opens.count, 2)
        for _ in range(2):
            self.assertEqual(self.fetch(self.store.get(KEY)), body_of(1000))
        self.assertEqual(opens.count, 2)

    def test_fresh_entry_no_file_io(self):
        """A small entry just stored is served from memory."""
        self.put(KEY, body_of(1000))
        opens = OpenCounter(self)
        self.assertEqual(self.fetch(self.store.get(KEY)), body_of(1000))
        self.assertEqual(opens.count, 0)

    def test_large_body_from_disk(self):
        """A body larger than a chunk is not held in memory: each read opens its file."""
        self.put(KEY, body_of(CHUNK_SIZE + 1))
        opens = OpenCounter(self)
        for _ in range(2):
            self.fetch(self.store.get(KEY))
        self.assertEqual(opens.count, 2)

    def test_memory_size_bound(self):
        """Entries beyond memory_size are read from disk again."""
        self.put(b"a", body_of(1000))
        self.put(b"b", body_of(1000))
        self.reopen(memory_size=1500)
        opens = OpenCounter(self)
        for key in (b"a", b"b", b"a"):
            self.fetch(self.store.get(key))
        self.assertEqual(opens.count, 6)

    def test_memory_size_real(self):
        """
        memory_size bounds the memory the held entries really take, not just
        their bytes on disk: holding the records of many small entries
        grows the heap by about memory_size at most.
        """
        meta = {**META, "headers": [["Content-Type", "text/plain"], ["Date", "Sat, 21 Nov 2026 19:00:00 GMT"],
                                    ["Cache-Control", "max-age=3600"], ["ETag", '"abcdef"']]}
        keys = [b"http://example.com:80/%d" % (number,) for number in range(2000)]
        for key in keys:
            writer = self.store.writer(key, meta)
            writer.write(b"x")
            writer.finish()
        self.reopen(memory_size=MiB)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for key in keys:
                self.store.get(key)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertLess(grown, 1.5 * MiB)

    def open_descriptors(self):
        """:returns: how many file descriptors the process has open."""
        return len(os.listdir("/dev/fd"))

    def test_follow_across_rename(self):
        """A follower behind the writer when finish renames the body into place still sends the whole body."""
        body = body_of(3 * CHUNK_SIZE)
        writer = self.store.writer(KEY, META)
        writer.write(body)
        transport = StringTransport()
        d = writer.follow(transport)
        self.turn()
        entry = writer.finish()
        name = file_name(KEY)
        self.assertEqual(self.files(), [f"{name[:2]}/{name}.body", f"{name[:2]}/{name}.meta"])
        self.assertEqual(len(transport.value()), CHUNK_SIZE)
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)
        self.assertEqual(self.fetch(entry), body)
        self.assertEqual(writer.tails, [])

    def test_follow_survives_removal(self):
        """A follower behind still sends the whole body when the entry is removed or evicted after finish."""
        body = body_of(3 * CHUNK_SIZE)
        for gone in ("removed", "evicted"):
            self.reopen(max_size=4 * CHUNK_SIZE)
            writer = self.store.writer(KEY, META)
            writer.write(body)
            transport = StringTransport()
            d = writer.follow(transport)
            self.turn()
            writer.finish()
            if gone == "removed":
                self.assertTrue(self.store.remove(KEY))
            else:
                self.put(b"other", body_of(3 * CHUNK_SIZE, seed=1))
            self.assertIsNone(self.store.get(KEY))
            self.assertFalse(self.file(KEY, ".body").exists())
            self.run_turns()
            self.successResultOf(d)
            self.assertEqual(transport.value(), body)
            self.assertEqual(writer.tails, [])

    def test_follow_closes_files(self):
        """However a follower ends, it leaves no file open."""

        def finished(writer, transport, d):
            writer.finish()

        def cancelled(writer, transport, d):
            d.cancel()
            writer.finish()

        def stopped(writer, transport, d):
            transport.producer.stopProducing()
            writer.finish()

        def aborted(writer, transport, d):
            writer.abort()

        def too_large(writer, transport, d):
            writer.write(body_of(self.store.max_size))

        gc.collect()
        before = self.open_descriptors()
        for end, result in [
            (finished, None),
            (cancelled, CancelledError),
            (stopped, StreamStopped),
            (aborted, BodyAbandoned),
            (too_large, BodyAbandoned),
        ]:
            self.reopen(max_size=4 * CHUNK_SIZE)
            writer = self.store.writer(KEY, META)
            writer.write(body_of(2 * CHUNK_SIZE))
            transport = StringTransport()
            d = writer.follow(transport)
            # Held, so that a file it failed to close is not closed by its collection.
            follower = transport.producer
            self.turn()
            end(writer, transport, d)
            self.run_turns()
            if result is None:
                self.successResultOf(d)
            else:
                self.failureResultOf(d, result)
            self.assertEqual(writer.tails, [])
            self.assertEqual(self.open_descriptors(), before, end.__name__)
            del follower

    def test_follow_write_error(self):
        """A write error (disk full) fails the follower with BodyAbandoned; the temporary file is deleted."""
        real = FilePath.open

        class Filling:
            full = False

            def __init__(self, f):
                self.f = f

            def write(self, data):
                if Filling.full:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return self.f.write(data)

            def flush(self):
                self.f.flush()

            def close(self):
                self.f.close()

        def filling(path, mode="r"):
            f = real(path, mode)
            return Filling(f) if mode.startswith("w") and path.path.endswith(".body.tmp") else f

        self.patch(FilePath, "open", filling)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        d = writer.follow(transport)
        writer.write(body_of(1000))
        self.run_turns()
        Filling.full = True
        writer.write(body_of(1000))
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(transport.value(), body_of(1000))
        self.assertIsNone(transport.producer)
        self.assertEqual(writer.tails, [])
        self.assertEqual(self.files(), [])

    def test_follow_temporary_file_gone(self):
        """Following a body whose temporary file was deleted fails at once with BodyAbandoned, registering nothing."""
        writer = self.store.writer(KEY, META)
        writer.write(b"partial")
        [temp] = self.files()
        self.path.preauthChild(temp).remove()
        transport = StringTransport()
        self.failureResultOf(writer.follow(transport), BodyAbandoned)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.assertEqual(writer.tails, [])

    def test_follow_writer_without_file(self):
        """Following a writer that could not create its temporary file fails at once with BodyAbandoned."""
        real = FilePath.open

        def no_space(path, mode="r"):
            if mode.startswith("w") and path.path.endswith(".body.tmp"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, mode)

        self.patch(FilePath, "open", no_space)
        writer = self.store.writer(KEY, META)
        transport = StringTransport()
        self.failureResultOf(writer.follow(transport), BodyAbandoned)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.assertEqual(writer.tails, [])


class ReadOnlyRemovalTests(TurnsMixin, SynchronousTestCase):
    """
    An entry removed (PURGE, invalidation) stays removed, for every process
    reading the directory and after a restart, or the removal says it
    failed: never a removal reported done that a restart undoes.  Deleting
    files is made to fail here by an injected error, since chmod does not
    stop root (the integration tests use chattr).
    """

    def setUp(self):
        super().setUp()
        self.path = FilePath(self.mktemp())
        self.store = self.reopen()
        self.put(KEY, b"body")
        self.refusals = []

    def reopen(self):
        """A new store on the same directory, loaded, as after a restart."""
        self.store = FileStore(self.path, 64 * MiB, self.clock, scheduler=self.schedule)
        self.store.load()
        self.run_turns()
        return self.store

    def record(self):
        name = file_name(KEY)
        return self.path.child(name[:2]).child(name + ".meta")

    def refuse_deleting(self):
        """Deleting files fails, as in a read-only directory."""
        def refuse(path):
            raise PermissionError(errno.EACCES, "Permission denied")

        self.refusals.append(self.patch(FilePath, "remove", refuse))

    def refuse_emptying(self):
        """Emptying files fails too, as on a read-only file system."""
        def refuse(path, length):
            raise OSError(errno.EROFS, "Read-only file system")

        self.refusals.append(self.patch(os, "truncate", refuse))

    def test_emptied_when_not_deleted(self):
        """A record that cannot be deleted is emptied: the entry is gone, after a restart too, and 200-worthy."""
        self.refuse_deleting()
        self.assertTrue(self.store.remove(KEY))
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.record().getContent(), b"")
        self.reopen()
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(len(self.store), 0)

    def test_tombstone_tidied(self):
        """An emptied record is deleted by the next load that can."""
        self.refuse_deleting()
        self.store.remove(KEY)
        self.unpatch()
        self.reopen()
        self.assertFalse(self.record().exists())

    def test_tombstone_before_load(self):
        """A store not yet loaded takes an emptied record for no entry, without calling it damaged."""
        self.refuse_deleting()
        self.store.remove(KEY)
        store = FileStore(self.path, 64 * MiB, self.clock, scheduler=self.schedule)
        self.assertIsNone(store.get(KEY))

    def test_not_removed(self):
        """A record that can be neither deleted nor emptied: EntryNotRemoved, and this store serves it no more."""
        self.refuse_deleting()
        self.refuse_emptying()
        error = self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.assertIn(self.record().path, str(error))
        self.assertIn("Permission denied", str(error))
        self.assertIsNone(self.store.get(KEY))
        self.assertIsNone(self.store.get(KEY))
        # Still there on disk, which is why the removal did not succeed.
        self.assertNotEqual(self.record().getContent(), b"")

    def test_not_removed_then_removed(self):
        """Removing it again once the directory is writable succeeds, and says it was there."""
        self.refuse_deleting()
        self.refuse_emptying()
        self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.unpatch()
        self.assertTrue(self.store.remove(KEY))
        self.assertFalse(self.record().exists())

    def test_stored_again(self):
        """A new response stored for the key is served: the old one is what was removed."""
        self.refuse_deleting()
        self.refuse_emptying()
        self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.unpatch()
        self.put(KEY, b"new!")
        self.assertEqual(self.fetch(self.store.get(KEY)), b"new!")

    def unpatch(self):
        """Deleting and emptying work again."""
        for refusal in self.refusals:
            refusal.restore()
