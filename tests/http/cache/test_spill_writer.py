"""
Tests for L{netproxy.http.cache.spill_writer}: a body kept in memory up to
SMALL_BODY, spilled past it to a temporary file that finish renames into
place, driven without a store (what is stored is recorded), and once
through L{netproxy.http.cache.sqlite_store.SQLiteStore} to see its row name
the file.
"""

import errno
import hashlib
import os
import sqlite3
import zlib

from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.body_files import BODIES
from netproxy.http.cache.entry import CHUNK_SIZE, BodyAbandoned
from netproxy.http.cache.spill_writer import SMALL_BODY, SpillWriter, entry_name
from netproxy.http.cache.sqlite_store import INDEX, SQLiteStore
from tests.cache_helpers import KEY, META, MiB, TurnsMixin, body_of


def open_descriptors():
    """:returns: how many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


class EntryNameTests(SynchronousTestCase):
    """An entry's name is the SHA-256 of its key."""

    def test_name(self):
        """The name is the key's SHA-256 digest, never the key."""
        self.assertEqual(entry_name(KEY), hashlib.sha256(KEY).digest())

    def test_long_key(self):
        """A key of 100 KiB has a name of 32 bytes like any other."""
        self.assertEqual(len(entry_name(b"k" * 100 * 1024)), 32)


class SpillWriterTestCase(TurnsMixin, SynchronousTestCase):
    """
    A L{SpillWriter} in a cache directory of its own, whose stored bodies
    are recorded in C{self.stored} and logged events in C{self.events}.
    """

    max_size = 8 * MiB

    def setUp(self):
        super().setUp()
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.writing = set()
        self.stored = []
        self.events = []

    def writer(self, key=KEY, meta=META, max_size=None):
        return SpillWriter(key, meta, self.max_size if max_size is None else max_size, self.schedule,
                           self.root.path, self.writing, Logger(observer=self.events.append), self.put_entry)

    def put_entry(self, entry, body, file):
        self.stored.append((entry, body, file))
        return entry

    def write(self, writer, body, piece=4096):
        for start in range(0, len(body), piece):
            writer.write(body[start : start + piece])

    def files(self):
        """:returns: the paths of the files in the cache directory, relative to it."""
        return sorted("/".join(p.segmentsFrom(self.root)) for p in self.root.walk() if p.isfile())

    def errors(self):
        """:returns: the events logged at level error."""
        return [event for event in self.events if event["log_level"] == LogLevel.error]


class SmallBodyTests(SpillWriterTestCase):
    """A body of up to SMALL_BODY bytes stays in memory and is stored with its row."""

    def test_small_body_never_a_file(self):
        """A small body creates no file at any time, and is stored whole in memory."""
        body = body_of(10000)
        writer = self.writer()
        for start in range(0, len(body), 1000):
            writer.write(body[start : start + 1000])
            self.assertEqual(self.files(), [])
        entry = writer.finish()
        self.assertEqual(self.stored, [(entry, body, None)])
        self.assertEqual((entry.length, entry.checksum), (10000, zlib.crc32(body)))
        self.assertEqual((self.files(), self.writing), ([], set()))

    def test_exactly_small_body(self):
        """A body of exactly SMALL_BODY bytes (64 KiB) still makes no file."""
        self.assertEqual(SMALL_BODY, 64 * 1024)
        body = body_of(SMALL_BODY)
        writer = self.writer()
        self.write(writer, body, piece=1000)
        self.assertEqual(self.files(), [])
        writer.finish()
        self.assertEqual(self.stored[0][1:], (body, None))

    def test_empty_body(self):
        """An empty body is stored in memory, as b""."""
        writer = self.writer()
        writer.finish()
        self.assertEqual(self.stored[0][1:], (b"", None))

    def test_abort(self):
        """An aborted small body stores nothing and leaves no file."""
        writer = self.writer()
        writer.write(b"partial")
        writer.abort()
        self.assertIsNone(writer.finish())
        self.assertEqual((self.stored, self.files()), ([], []))


class SpillTests(SpillWriterTestCase):
    """Past SMALL_BODY, the body goes to a temporary file of this process, renamed into place at finish."""

    def temporary(self):
        """:returns: the one temporary file, checked to be this process's for the key's entry."""
        [temp] = self.files()
        hexname = entry_name(KEY).hex()
        self.assertRegex(temp, f"^{BODIES}/{hexname[:2]}/{hexname}-[0-9a-f]{{8}}\\.{os.getpid()}\\.tmp$")
        return temp

    def test_one_byte_over(self):
        """A body one byte over SMALL_BODY is written to a temporary file named with this pid."""
        body = body_of(SMALL_BODY + 1)
        writer = self.writer()
        writer.write(body[:SMALL_BODY])
        self.assertEqual(self.files(), [])
        writer.write(body[SMALL_BODY:])
        temp = self.temporary()
        self.assertEqual(self.root.preauthChild(temp).getContent(), body)
        self.assertEqual(self.writing, {self.root.preauthChild(temp).path})

    def test_renamed_at_finish(self):
        """finish renames the temporary file into place and stores the entry with the file's path, no body."""
        body = body_of(3 * CHUNK_SIZE + 5)
        writer = self.writer()
        self.write(writer, body, piece=5000)
        temp = self.temporary()
        entry = writer.finish()
        [(stored, kept, path)] = self.stored
        self.assertEqual((stored, kept), (entry, None))
        self.assertEqual(self.files(), [path])
        self.assertEqual(temp, f"{path}.{os.getpid()}.tmp")
        self.assertEqual(self.root.preauthChild(path).getContent(), body)
        self.assertEqual((entry.length, entry.checksum), (len(body), zlib.crc32(body)))
        self.assertEqual(self.writing, set())

    def test_written_as_it_arrives(self):
        """Once spilled, each piece is in the file as soon as it is written: nothing is kept in memory."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 1))
        temp = self.root.preauthChild(self.temporary())
        for count in range(1, 4):
            writer.write(body_of(1000, seed=count))
            temp.changed()
            self.assertEqual(temp.getsize(), SMALL_BODY + 1 + 1000 * count)
        writer.abort()

    def test_abort_removes_temporary(self):
        """Abort deletes the temporary file, forgets it is being written, and stores nothing."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))
        self.temporary()
        writer.abort()
        self.assertEqual((self.files(), self.writing, self.stored), ([], set(), []))
        self.assertIsNone(writer.finish())

    def test_too_large(self):
        """A body growing past max_size has its temporary file deleted at once, and is not stored."""
        writer = self.writer(max_size=2 * SMALL_BODY)
        writer.write(body_of(SMALL_BODY + 10))
        self.temporary()
        writer.write(body_of(SMALL_BODY))
        self.assertTrue(writer.abandoned)
        self.assertEqual((self.files(), self.writing), ([], set()))
        self.assertIsNone(writer.finish())
        self.assertEqual(self.stored, [])

    def test_disk_full(self):
        """A write error (disk full) aborts: logged with the entry's name, temporary file deleted, nothing stored."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))

        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        patched = self.patch(os, "write", full)
        writer.write(b"more")
        patched.restore()
        self.assertTrue(writer.abandoned)
        self.assertEqual((self.files(), self.writing), ([], set()))
        [error] = self.errors()
        self.assertEqual(error["name"], entry_name(KEY).hex())
        self.assertIn("No space left on device", error["error"])
        self.assertIsNone(writer.finish())
        self.assertEqual(self.stored, [])

    def test_disk_full_at_spill(self):
        """A temporary file that cannot be created aborts the body, logged; nothing is stored."""
        real = os.open

        def full(path, *args, **kwargs):
            if path.endswith(".tmp"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, *args, **kwargs)

        self.patch(os, "open", full)
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))
        self.assertTrue(writer.abandoned)
        self.assertEqual(len(self.errors()), 1)
        writer.write(b"ignored")
        self.assertIsNone(writer.finish())
        self.assertEqual((self.files(), self.writing, self.stored), ([], set(), []))

    def test_rename_fails(self):
        """A temporary file that cannot be renamed into place is logged and deleted: nothing is stored."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))

        def refuse(source, destination):
            raise PermissionError(errno.EACCES, "Permission denied")

        self.patch(os, "rename", refuse)
        self.assertIsNone(writer.finish())
        self.assertTrue(writer.abandoned)
        self.assertEqual((self.files(), self.writing, self.stored), ([], set(), []))
        self.assertEqual(len(self.errors()), 1)

    def test_put_raises(self):
        """An error storing the entry (metadata not JSON) is raised by finish, once the file is in place."""

        def refuse(entry, body, file):
            self.stored.append(file)
            raise TypeError("not JSON")

        self.put_entry = refuse
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))
        self.assertRaises(TypeError, writer.finish)
        # The file is the store's to delete, as it knows whether a row names it.
        self.assertEqual(self.files(), self.stored)
        self.assertTrue(writer.abandoned)

    def test_two_writers(self):
        """Two writers of one key write files of their own; each renames its own into place."""
        first, second = self.writer(), self.writer()
        first.write(body_of(SMALL_BODY + 1, seed=1))
        second.write(body_of(SMALL_BODY + 2, seed=2))
        self.assertEqual(len(self.files()), 2)
        second.finish()
        first.finish()
        paths = [path for entry, body, path in self.stored]
        self.assertNotEqual(paths[0], paths[1])
        self.assertEqual([self.root.preauthChild(p).getsize() for p in paths], [SMALL_BODY + 2, SMALL_BODY + 1])


class FollowTests(SpillWriterTestCase):
    """Followers read what is written, from memory then from the file, across the spill and the rename."""

    def follow(self, writer):
        transport = StringTransport()
        return writer.follow(transport), transport

    def test_across_spill_and_rename(self):
        """A follower started while the body is in memory gets it all, through the spill and the rename."""
        body = body_of(3 * CHUNK_SIZE + 7)
        writer = self.writer()
        d, transport = self.follow(writer)
        writer.write(body[:1000])
        self.run_turns()
        self.assertEqual(transport.value(), body[:1000])
        writer.write(body[1000 : 2 * CHUNK_SIZE])
        self.turn()
        writer.write(body[2 * CHUNK_SIZE :])
        self.turn()
        writer.finish()
        self.assertLess(len(transport.value()), len(body))
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)
        self.assertEqual(writer.tails, [])

    def test_behind_at_rename(self):
        """A follower behind the writer when the file is renamed into place still sends the whole body."""
        body = body_of(4 * CHUNK_SIZE)
        writer = self.writer()
        writer.write(body)
        d, transport = self.follow(writer)
        self.turn()
        writer.finish()
        self.assertEqual(len(transport.value()), CHUNK_SIZE)
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)

    def test_file_deleted_after_rename(self):
        """A follower reading from the file keeps reading it once deleted (evicted, replaced)."""
        body = body_of(4 * CHUNK_SIZE)
        writer = self.writer()
        writer.write(body)
        d, transport = self.follow(writer)
        self.turn()
        writer.finish()
        [(entry, kept, path)] = self.stored
        self.root.preauthChild(path).remove()
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)

    def test_small_body_after_finish(self):
        """A follower behind on a small body stored from memory gets the whole body."""
        body = body_of(SMALL_BODY)
        writer = self.writer()
        writer.write(body)
        d, transport = self.follow(writer)
        writer.finish()
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)

    def test_abort_after_spill(self):
        """A follower of a spilled body that is aborted fails with BodyAbandoned."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))
        d, transport = self.follow(writer)
        writer.abort()
        self.run_turns()
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual(writer.tails, [])

    def test_temporary_file_gone(self):
        """Following a spilled body whose temporary file was deleted fails at once, registering nothing."""
        writer = self.writer()
        writer.write(body_of(SMALL_BODY + 10))
        [temp] = self.files()
        self.root.preauthChild(temp).remove()
        d, transport = self.follow(writer)
        self.failureResultOf(d, BodyAbandoned)
        self.assertEqual((transport.value(), transport.producer, writer.tails), (b"", None, []))
        writer.abort()

    def test_spill_failed(self):
        """Following a body whose temporary file could not be created fails at once with BodyAbandoned."""

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        writer = self.writer()
        self.patch(os, "open", full)
        writer.write(body_of(SMALL_BODY + 10))
        d, transport = self.follow(writer)
        self.failureResultOf(d, BodyAbandoned)


class ReaderTests(SpillWriterTestCase):
    """The reader of a body: bytes from memory or the file, and a descriptor closed by release."""

    def test_memory(self):
        """Before the spill, the reader reads from memory and opens nothing."""
        writer = self.writer()
        writer.write(b"0123456789")
        before = open_descriptors()
        read, release = writer.reader()
        self.assertEqual((read(2, 3), read(8, 100)), (b"234", b"89"))
        self.assertEqual(open_descriptors(), before)
        release()

    def test_descriptor_released(self):
        """After the spill, the reader holds a descriptor of the file, closed by release, once even if called twice."""
        writer = self.writer()
        body = body_of(SMALL_BODY + 10)
        writer.write(body)
        before = open_descriptors()
        read, release = writer.reader()
        self.assertEqual(open_descriptors(), before + 1)
        self.assertEqual(read(SMALL_BODY, 100), body[SMALL_BODY:])
        release()
        release()
        self.assertEqual(open_descriptors(), before)
        writer.abort()

    def test_reader_spans_spill(self):
        """A reader taken while in memory reads the file once spilled, and release closes that descriptor."""
        writer = self.writer()
        body = body_of(SMALL_BODY + 10)
        writer.write(body[:100])
        read, release = writer.reader()
        self.assertEqual(read(0, 100), body[:100])
        writer.write(body[100:])
        before = open_descriptors()
        self.assertEqual(read(50, SMALL_BODY), body[50 : SMALL_BODY + 50])
        self.assertEqual(open_descriptors(), before + 1)
        release()
        self.assertEqual(open_descriptors(), before)
        writer.abort()

    def test_followers_release(self):
        """However a follower of a spilled body ends, no descriptor stays open."""
        before = open_descriptors()
        for end in ("finish", "abort", "cancel", "stop"):
            writer = self.writer()
            writer.write(body_of(2 * CHUNK_SIZE))
            transport = StringTransport()
            d = writer.follow(transport)
            self.turn()
            if end == "cancel":
                d.cancel()
            elif end == "stop":
                transport.producer.stopProducing()
            if end == "abort":
                writer.abort()
            else:
                writer.finish()
            self.run_turns()
            if end == "finish":
                self.successResultOf(d)
            else:
                self.failureResultOf(d)
            self.assertEqual((writer.tails, open_descriptors()), ([], before), end)


class StoredTests(TurnsMixin, SynchronousTestCase):
    """Through the store: the row of a spilled body names its file."""

    def test_row_names_file(self):
        """A large body's row holds no body and names the file renamed into place; a small one's holds the body."""
        path = FilePath(self.mktemp())
        self.store = SQLiteStore(path, 64 * MiB, self.clock, scheduler=self.schedule)
        self.addCleanup(self.store.close)
        large = body_of(SMALL_BODY + 1)
        self.put(KEY, large)
        self.put(b"small", b"tiny")
        self.clock.advance(0)
        db = sqlite3.connect(path.child(INDEX).path)
        self.addCleanup(db.close)
        rows = {name: (nobody, file) for name, nobody, file in db.execute("SELECT name, body IS NULL, file FROM entries")}
        nobody, file = rows[entry_name(KEY)]
        self.assertTrue(nobody)
        self.assertEqual(path.preauthChild(file).getContent(), large)
        self.assertEqual(rows[entry_name(b"small")], (False, None))
        self.assertEqual(["/".join(p.segmentsFrom(path)) for p in path.child(BODIES).walk() if p.isfile()], [file])
