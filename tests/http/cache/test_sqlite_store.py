"""
Tests for L{netproxy.http.cache.sqlite_store}: what only the store on disk
does (persistence across restarts, several stores on one directory, damage
found and discarded, crash leftovers, the index's files, failed writes, the
memory tier).  The store contract it shares with every store is tested in
C{test_interfaces}; its writer, index, files and memory tier beside their
modules.
"""

import errno
import gc
import os
import random
import sqlite3
import tracemalloc
import zlib

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import EntryNotRemoved
from netproxy.http.cache.body_files import BODIES, SWEEP_AGE, new_body_file, temporary
from netproxy.http.cache.entry import CHUNK_SIZE, DamagedEntry, Entry, decode_record, encode_record
from netproxy.http.cache.spill_writer import SMALL_BODY, entry_name
from netproxy.http.cache.sqlite_schema import SCHEMA_VERSION
from netproxy.http.cache.sqlite_store import INDEX, SQLiteStore
from netproxy.http.cache.use_order import TOUCH_INTERVAL
from tests.cache_helpers import KEY, META, T0, FaultyConnection, MiB, TurnsMixin, body_of

LARGE = 3 * CHUNK_SIZE


class StoreTestCase(TurnsMixin, SynchronousTestCase):
    """
    A cache directory C{self.path} and the stores opened on it (C{open}), as
    processes would have; the events logged in C{self.logged}.
    """

    def setUp(self):
        super().setUp()
        self.path = FilePath(self.mktemp())
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.store = self.open()

    def open(self, max_size=64 * MiB, clock=None, **kwargs):
        """:returns: a new store on the directory, closed at the end of the test unless closed or killed before."""
        store = SQLiteStore(self.path, max_size, self.clock if clock is None else clock, scheduler=self.schedule,
                            **kwargs)
        self.addCleanup(self.shut, store)
        return store

    def reopen(self, **kwargs):
        """Close C{self.store} and open a new one, as a restart would."""
        self.shut(self.store)
        self.store = self.open(**kwargs)
        return self.store

    def shut(self, store):
        """Close C{store}, unless it is closed already."""
        if not getattr(store, "shut", False):
            store.shut = True
            store.close()

    def kill(self, store):
        """End C{store} as kill -9 would: what its turn wrote and did not commit is lost."""
        db = store._index._db
        db.rollback()
        db.close()
        store.shut = True

    def commit(self):
        """End the reactor turn: the stores commit what it wrote."""
        self.clock.advance(0)

    def faulty(self, store):
        """:returns: the L{FaultyConnection} C{store}'s index now goes through."""
        store._index._db = faulty = FaultyConnection(store._index._db)
        return faulty

    def db(self):
        """:returns: a connection to the index, as another process would have."""
        db = sqlite3.connect(self.path.child(INDEX).path, isolation_level=None)
        self.addCleanup(db.close)
        return db

    def row(self, key, *columns):
        """:returns: C{columns} of the row of C{key}'s entry, or L{None}."""
        return self.db().execute(f"SELECT {', '.join(columns)} FROM entries WHERE name = ?",
                                 (entry_name(key),)).fetchone()

    def set_row(self, key, **columns):
        """Change C{columns} of the row of C{key}'s entry, as damage would (the stores must have committed)."""
        assignments = ", ".join(f"{column} = ?" for column in columns)
        self.db().execute(f"UPDATE entries SET {assignments} WHERE name = ?", (*columns.values(), entry_name(key)))

    def body_file(self, key):
        """:returns: the file of C{key}'s entry's body, as its row names it."""
        return self.path.preauthChild(self.row(key, "file")[0])

    def files(self):
        """:returns: the paths of the body files, relative to the cache directory."""
        return sorted("/".join(p.segmentsFrom(self.path)) for p in self.path.child(BODIES).walk() if p.isfile())

    def read(self, store, entry):
        """:returns: the body C{store} sends for C{entry}."""
        transport = StringTransport()
        d = store.read(entry, transport)
        self.run_turns()
        self.successResultOf(d)
        return transport.value()

    def load(self, store=None):
        """Run a store's load to its end."""
        d = (self.store if store is None else store).load()
        self.run_turns()
        self.successResultOf(d)

    def events(self, level):
        """:returns: the formats of the events logged at C{level}."""
        return [event["log_format"] for event in self.logged if event["log_level"] == level]

    def accounted(self):
        """:returns: the bytes and count of the entries as their rows' records and bodies say."""
        size = count = 0
        for record, size_ in self.db().execute("SELECT record, size FROM entries"):
            entry = decode_record(record)
            self.assertEqual(size_, entry.length + len(record))
            size += size_
            count += 1
        return size, count

    def assert_totals(self, store=None):
        """Assert that the store's size and length, the totals table and the rows all agree."""
        store = self.store if store is None else store
        db = self.db()
        counted = db.execute("SELECT coalesce(sum(size), 0), count(*) FROM entries").fetchone()
        self.assertEqual(db.execute("SELECT bytes, entries FROM totals").fetchone(), counted)
        self.assertEqual((store.size, len(store)), counted)
        self.assertEqual(self.accounted(), counted)

    def assert_files_named(self):
        """Assert that the body files are exactly those the rows name."""
        named = sorted(file for (file,) in self.db().execute("SELECT file FROM entries WHERE file IS NOT NULL"))
        self.assertEqual(self.files(), named)


class PersistenceTests(StoreTestCase):
    """What is committed survives a restart; what is not is lost whole."""

    def test_committed_found(self):
        """Entries stored and committed are found by a new store on the directory, bodies and size intact."""
        small = self.put(b"small", body_of(1000))
        large = self.put(b"large", body_of(LARGE, seed=1))
        self.commit()
        size = self.store.size
        self.reopen()
        self.assertEqual((len(self.store), self.store.size), (2, size))
        self.assertEqual(self.store.get(b"small"), small)
        self.assertEqual(self.store.get(b"large"), large)
        self.assertEqual(self.fetch(small), body_of(1000))
        self.assertEqual(self.fetch(large), body_of(LARGE, seed=1))

    def test_found_by_other_process_before_close(self):
        """A committed entry is found by a store opened while the first one is still open."""
        entry = self.put(KEY, b"body")
        self.commit()
        other = self.open()
        self.assertEqual(other.get(KEY), entry)
        self.assertEqual(self.read(other, entry), b"body")

    def test_uncommitted_lost(self):
        """Entries stored in a turn that was never committed (a kill) are not found by the next store."""
        self.put(b"kept", b"body")
        self.commit()
        self.put(b"small", b"body")
        self.put(b"large", body_of(LARGE))
        self.kill(self.store)
        self.store = self.open()
        self.assertIsNone(self.store.get(b"small"))
        self.assertIsNone(self.store.get(b"large"))
        self.assertIsNotNone(self.store.get(b"kept"))
        self.assert_totals()

    def test_uncommitted_file_swept(self):
        """The body file renamed into place in a turn never committed is named by no row: load deletes it."""
        self.put(KEY, body_of(LARGE))
        self.kill(self.store)
        self.assertEqual(len(self.files()), 1)
        self.store = self.open()
        self.load()
        self.assertEqual(self.files(), [])

    def test_replacement_uncommitted(self):
        """A replacement lost by a kill leaves the old version servable, its file intact; load sweeps the new file."""
        old = self.put(KEY, body_of(LARGE))
        self.commit()
        self.put(KEY, body_of(LARGE, seed=1))
        self.kill(self.store)
        self.store = self.open()
        self.assertEqual(self.store.get(KEY), old)
        self.assertEqual(self.fetch(old), body_of(LARGE))
        self.load()
        self.assert_files_named()

    def test_replaced_file_deleted_once_committed(self):
        """The file of a replaced version is deleted when the replacement is committed, not before."""
        self.put(KEY, body_of(LARGE))
        self.commit()
        old = self.files()
        self.put(KEY, body_of(LARGE, seed=1))
        self.assertEqual(len(self.files()), 2)
        self.commit()
        self.assertNotEqual(self.files(), old)
        self.assert_files_named()

    def test_writer_killed(self):
        """A body half written by a store that was killed leaves a temporary file, deleted by the next load."""
        writer = self.store.writer(KEY, META)
        writer.write(body_of(SMALL_BODY + 1))
        self.kill(self.store)
        [temp] = self.files()
        self.assertTrue(temp.endswith(f".{os.getpid()}.tmp"))
        self.store = self.open()
        self.load()
        self.assertEqual(self.files(), [])

    def test_load_spares_writers(self):
        """load deletes no temporary file a writer of this store is writing; the writer then finishes."""
        writer = self.store.writer(KEY, META)
        writer.write(body_of(SMALL_BODY + 1))
        self.load()
        self.assertEqual(len(self.files()), 1)
        writer.write(b"rest")
        entry = writer.finish()
        self.assertEqual(self.fetch(entry), body_of(SMALL_BODY + 1) + b"rest")

    def test_load_shared_spares_young(self):
        """A shared store's load leaves orphans younger than SWEEP_AGE: another process may be about to name them."""
        self.reopen(shared=True)
        self.clock.advance(T0)
        for age, seed in ((SWEEP_AGE - 1, 1), (SWEEP_AGE + 1, 2)):
            path = self.path.preauthChild(new_body_file(entry_name(b"%d" % seed)))
            path.parent().makedirs(ignoreExistingDirectory=True)
            path.setContent(b"orphan")
            os.utime(path.path, (T0 - age, T0 - age))
            if seed == 1:
                young = "/".join(path.segmentsFrom(self.path))
        self.load()
        self.assertEqual(self.files(), [young])

    def test_load_old_layout(self):
        """load deletes the files of the layout this store replaced, and keeps the entries."""
        entry = self.put(KEY, body_of(LARGE))
        self.commit()
        hexname = entry_name(KEY).hex()
        for suffix in (".body", ".meta", ".meta.tmp"):
            self.path.child(hexname[:2]).makedirs(ignoreExistingDirectory=True)
            self.path.child(hexname[:2]).child(hexname + suffix).setContent(b"old")
        self.load()
        self.assertFalse(self.path.child(hexname[:2]).exists())
        self.assertEqual(self.fetch(self.store.get(KEY)), body_of(LARGE))
        self.assertEqual(self.store.get(KEY), entry)

    def test_load_logged(self):
        """load logs the entries and bytes found once it is done."""
        self.put(KEY, b"body")
        self.commit()
        self.reopen()
        self.load()
        [event] = [e for e in self.logged if e["log_format"].startswith("cache {path} loaded")]
        self.assertEqual((event["count"], event["size"]), (1, self.store.size))

    def test_update_persists(self):
        """Updated metadata survives a restart, the body unchanged."""
        self.put(KEY, body_of(LARGE))
        self.commit()
        self.store.update(KEY, {"v": 2})
        self.commit()
        self.reopen()
        self.assertEqual(self.store.get(KEY).meta, {"v": 2})
        self.assertEqual(self.fetch(self.store.get(KEY)), body_of(LARGE))
        self.assert_totals()

    def test_remove_committed_at_once(self):
        """A removal is committed before remove returns: another store, and a restart, see it gone at once."""
        self.put(KEY, body_of(LARGE))
        self.put(b"other", b"body")
        self.commit()
        other = self.open()
        self.assertIsNotNone(other.get(KEY))
        self.assertTrue(self.store.remove(KEY))
        self.assertIsNone(self.row(KEY, "id"))
        self.assertEqual(len(other), 1)
        self.kill(self.store)
        self.store = self.open()
        self.assertIsNone(self.store.get(KEY))
        self.assertIsNotNone(self.store.get(b"other"))
        self.assertEqual(self.files(), [])

    def test_evictions_persist(self):
        """Entries evicted are gone after a restart, and their files deleted."""
        self.reopen(max_size=4 * LARGE)
        for i in range(6):
            self.put(b"%d" % i, body_of(LARGE, seed=i))
            self.clock.advance(1)
        self.reopen(max_size=4 * LARGE)
        self.assertEqual([self.store.get(b"%d" % i) is not None for i in range(6)],
                         [False, False, False, True, True, True])
        self.assertEqual(self.store.evictions, 0)
        self.assert_totals()
        self.assert_files_named()


class SharedTests(StoreTestCase):
    """Two stores on one directory, as two processes: each sees what the other commits."""

    def setUp(self):
        super().setUp()
        self.reopen(shared=True)
        self.other = self.open(shared=True)

    def test_stored_seen_after_commit(self):
        """What one store stores the other finds once committed, and reads whole, small or large."""
        small = self.put(b"small", body_of(1000))
        large = self.put(b"large", body_of(LARGE))
        self.assertIsNone(self.other.get(b"small"))
        self.commit()
        self.assertEqual(self.other.get(b"small"), small)
        self.assertEqual(self.other.get(b"large"), large)
        self.assertEqual(self.read(self.other, small), body_of(1000))
        self.assertEqual(self.read(self.other, large), body_of(LARGE))
        self.assertEqual((self.other.size, len(self.other)), (self.store.size, 2))

    def test_remove_seen_at_once(self):
        """An entry removed (PURGE) through one store is not served from the other's memory, without waiting."""
        entry = self.put(KEY, body_of(1000))
        self.commit()
        self.assertEqual(self.read(self.other, self.other.get(KEY)), body_of(1000))
        self.assertEqual(self.other.held_body(entry), body_of(1000))
        self.assertTrue(self.store.remove(KEY))
        self.assertIsNone(self.other.get(KEY))
        self.assertIsNone(self.other.update(KEY, {"v": 2}))

    def test_replacement_seen(self):
        """An entry replaced through one store is served in its new version by the other, which held the old."""
        self.put(KEY, body_of(1000))
        self.commit()
        self.other.get(KEY)
        new = self.put(KEY, body_of(2000, seed=1), meta={"v": 2})
        self.commit()
        self.assertEqual(self.other.get(KEY), new)
        self.assertEqual(self.read(self.other, new), body_of(2000, seed=1))

    def test_removed_and_stored_again(self):
        """An entry removed and stored again through one store is never the old version for the other."""
        self.put(KEY, b"old body")
        self.commit()
        self.assertEqual(self.other.get(KEY).length, 8)
        self.store.remove(KEY)
        new = self.put(KEY, b"new, longer body")
        self.commit()
        self.assertEqual(self.other.get(KEY), new)
        self.assertEqual(self.read(self.other, self.other.get(KEY)), b"new, longer body")

    def test_update_seen(self):
        """Metadata updated (after a 304) through one store is what the other, which held the entry, serves."""
        self.put(KEY, body_of(1000))
        self.commit()
        self.assertEqual(self.other.get(KEY).meta, META)
        updated = self.store.update(KEY, {"v": 2})
        self.commit()
        self.assertEqual(self.other.get(KEY), updated)
        self.assertEqual(self.other.held_body(updated), body_of(1000))

    def test_update_after_replacement(self):
        """The other store's update of an entry replaced since applies to the new version, whose body it keeps."""
        self.put(KEY, body_of(1000))
        self.commit()
        self.other.get(KEY)
        self.put(KEY, body_of(3000, seed=1))
        self.commit()
        updated = self.other.update(KEY, {"v": 3})
        self.commit()
        self.assertEqual(updated.length, 3000)
        self.assertEqual(self.store.get(KEY), updated)
        self.assertEqual(self.read(self.store, updated), body_of(3000, seed=1))

    def test_eviction_seen(self):
        """Entries evicted by one store are not served by the other, and both count the same size."""
        self.reopen(shared=True, max_size=2 * LARGE + 8000)
        self.put(b"a", body_of(LARGE))
        self.commit()
        self.assertIsNotNone(self.other.get(b"a"))
        self.clock.advance(1)
        self.put(b"b", body_of(LARGE, seed=1))
        self.clock.advance(1)
        self.put(b"c", body_of(LARGE, seed=2))
        self.commit()
        self.assertEqual(self.store.evictions, 1)
        self.assertIsNone(self.other.get(b"a"))
        self.assertEqual((self.other.size, len(self.other)), (self.store.size, 2))
        self.assert_files_named()

    def test_use_by_other(self):
        """A use recorded by the other store keeps an entry from eviction by this one."""
        self.reopen(shared=True, max_size=2 * LARGE + 8000)
        self.put(b"a", body_of(LARGE))
        self.clock.advance(1)
        self.put(b"b", body_of(LARGE, seed=1))
        self.clock.advance(1)
        self.assertIsNotNone(self.other.get(b"a"))
        self.commit()
        self.put(b"c", body_of(LARGE, seed=2))
        self.commit()
        self.assertEqual([self.other.get(k) is not None for k in (b"a", b"b", b"c")], [True, False, True])

    def test_eviction_by_other(self):
        """An entry stored by one store and evicted by the other's put is gone for both."""
        other = self.open(shared=True, max_size=2 * LARGE + 8000)
        self.put(b"a", body_of(LARGE))
        self.commit()
        self.assertIsNotNone(self.store.get(b"a"))
        self.clock.advance(1)
        self.put(b"b", body_of(LARGE, seed=1))
        self.clock.advance(1)
        writer = other.writer(b"c", META)
        writer.write(body_of(LARGE, seed=2))
        writer.finish()
        self.commit()
        self.assertEqual(other.evictions, 1)
        self.assertIsNone(self.store.get(b"a"))
        self.assert_totals()
        self.assert_files_named()


class UseTests(StoreTestCase):
    """Uses are recorded in the index, coarsely, so that the order of eviction survives a restart."""

    def test_lru_across_reopen(self):
        """The least recently used entry, by uses recorded before a restart, is evicted first after it."""
        for key in (b"a", b"b", b"c"):
            self.put(key, body_of(1000))
            self.clock.advance(10)
        self.clock.advance(60)
        self.store.get(b"a")
        self.commit()
        size = self.store.size
        self.reopen(max_size=size + 1)
        self.put(b"d", body_of(10))
        self.assertEqual([self.store.get(k) is not None for k in (b"a", b"b", b"c", b"d")], [True, False, True, True])

    def test_read_is_use(self):
        """Reading an entry counts as a use, recorded in the index."""
        self.put(b"a", body_of(LARGE))
        self.clock.advance(10)
        self.put(b"b", body_of(1000))
        self.clock.advance(10)
        entry = self.store.get(b"a")
        self.clock.advance(10)
        self.fetch(entry)
        self.commit()
        self.assertEqual(self.row(b"a", "used"), (30.0,))

    def test_touch_coarse(self):
        """A hit within TOUCH_INTERVAL of the last recorded use writes nothing; one after records its time."""
        self.put(KEY, b"body")
        self.commit()
        [stored] = self.row(KEY, "used")
        self.clock.advance(TOUCH_INTERVAL / 2)
        self.store.get(KEY)
        self.store.held_body(self.store.get(KEY))
        self.fetch(self.store.get(KEY))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.store._index._db.in_transaction)
        self.assertEqual(self.row(KEY, "used"), (stored,))
        self.clock.advance(TOUCH_INTERVAL)
        self.store.get(KEY)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.commit()
        self.assertEqual(self.row(KEY, "used"), (1.5 * TOUCH_INTERVAL,))
        self.store.get(KEY)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_uses_ordered_within_tick(self):
        """Entries stored within one tick of the clock are still ordered: the first stored is evicted first."""
        self.reopen(max_size=3 * 1500)
        for key in (b"a", b"b", b"c", b"d"):
            self.put(key, body_of(1000))
        self.assertEqual([self.store.get(k) is not None for k in (b"a", b"b", b"c", b"d")], [False, True, True, True])


class SizeTests(StoreTestCase):
    """The size is the sum of bodies and records, in the index's totals, whatever happens."""

    def test_sum(self):
        """After stores, replacements, updates, removals, evictions and a restart, the totals match the rows."""
        self.reopen(max_size=6 * LARGE)
        for i in range(5):
            self.put(b"%d" % i, body_of(LARGE if i % 2 else 500, seed=i))
            self.clock.advance(1)
        self.assert_totals()
        self.put(b"1", body_of(100))
        self.put(b"2", body_of(LARGE))
        self.store.update(b"3", {"longer": "x" * 500})
        self.store.remove(b"4")
        self.assert_totals()
        for i in range(5, 10):
            self.put(b"%d" % i, body_of(LARGE, seed=i))
        self.assertGreater(self.store.evictions, 0)
        self.assertLessEqual(self.store.size, self.store.max_size)
        self.commit()
        self.assert_totals()
        self.reopen(max_size=6 * LARGE)
        self.assert_totals()
        self.assert_files_named()

    def test_random_operations(self):
        """After each turn of 300 random operations (fixed seed), the totals match the rows and the files the rows."""
        rng = random.Random(20261205)
        self.reopen(max_size=8 * LARGE)
        keys = [b"https://example.com/%d" % i for i in range(15)]
        for step in range(300):
            key = rng.choice(keys)
            action = rng.choice(("small", "large", "large", "update", "remove", "get", "read", "abort", "restart"))
            if action in ("small", "large"):
                size = rng.randrange(0, SMALL_BODY + 1) if action == "small" else rng.randrange(SMALL_BODY + 1, 3 * LARGE)
                self.put(key, body_of(size, seed=step), meta={"step": step})
            elif action == "update":
                self.store.update(key, {"step": step, "updated": True})
            elif action == "remove":
                self.store.remove(key)
            elif action == "get":
                self.store.get(key)
            elif action == "read":
                entry = self.store.get(key)
                if entry is not None:
                    self.assertEqual(len(self.fetch(entry)), entry.length)
            elif action == "abort":
                writer = self.store.writer(key, META)
                writer.write(body_of(rng.randrange(0, 2 * SMALL_BODY)))
                writer.abort()
            else:
                self.reopen(max_size=8 * LARGE)
            self.assertLessEqual(self.store.size, self.store.max_size, f"step {step}: {action}")
            if rng.random() < 0.5:
                self.clock.advance(rng.choice((0, 0.5, 2)))
                self.assert_totals()
                self.assert_files_named()
        self.commit()
        self.assert_totals()
        self.assert_files_named()


class DamageTests(StoreTestCase):
    """Damaged rows and files are detected, warned of, and their entries discarded."""

    def setUp(self):
        super().setUp()
        self.put(b"other", b"other body")
        self.commit()

    def discarded(self, key=KEY):
        """Assert that C{key}'s entry was discarded with a warning, and that the rest is intact."""
        self.assertIsNone(self.store.get(key))
        self.commit()
        self.assertIsNone(self.row(key, "id"))
        self.assertEqual(self.fetch(self.store.get(b"other")), b"other body")
        self.assertTrue(any("discarding" in f for f in self.events(LogLevel.warn)), self.events(LogLevel.warn))
        self.assert_totals()
        self.assert_files_named()

    def damaged_row(self, stored=b"0123456789", **columns):
        """Store C{stored} for KEY, change its row, and open a new store (the old one holds the entry)."""
        self.put(KEY, stored)
        self.commit()
        self.set_row(KEY, **columns)
        self.reopen()

    def test_garbage_record(self):
        """A row whose record is not JSON is discarded on get."""
        self.damaged_row(record=b'{"version": 1, "key": ')
        self.discarded()

    def test_record_of_unknown_version(self):
        """A row whose record is of an unknown version is discarded on get."""
        self.damaged_row(record=b'{"version": 99}')
        self.discarded()

    def test_record_of_other_key(self):
        """A row holding another key's record is discarded on get, saying so."""
        self.damaged_row(record=self.row(b"other", "record")[0])
        self.discarded()
        self.assertTrue(any("another key" in e.get("error", "") for e in self.logged))

    def test_inline_body_checksum(self):
        """A row whose body fails its checksum is discarded on get."""
        self.damaged_row(body=b"0123456789"[::-1])
        self.discarded()

    def test_inline_body_length(self):
        """A row whose body is shorter than its record says is discarded on get."""
        self.damaged_row(body=b"01234")
        self.discarded()

    def test_no_body(self):
        """A row with neither a body nor a file is discarded on get."""
        self.damaged_row(body=None)
        self.discarded()

    def test_large_truncated(self):
        """A large body's file cut short fails the read with DamagedEntry before anything is sent; the entry goes."""
        entry = self.put(KEY, body_of(LARGE))
        self.commit()
        with open(self.body_file(KEY).path, "r+b") as f:
            f.truncate(2 * CHUNK_SIZE)
        transport = StringTransport()
        self.failureResultOf(self.store.read(entry, transport), DamagedEntry)
        self.assertEqual((transport.value(), transport.producer), (b"", None))
        self.discarded()

    def test_large_altered(self):
        """A large body altered in place fails the read at its end, last chunk held back; the entry and file go."""
        body = body_of(LARGE)
        entry = self.put(KEY, body)
        self.commit()
        with open(self.body_file(KEY).path, "r+b") as f:
            f.seek(CHUNK_SIZE + 10)
            f.write(bytes([body[CHUNK_SIZE + 10] ^ 0xFF]))
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.run_turns()
        self.failureResultOf(d, DamagedEntry)
        self.assertEqual(len(transport.value()), LARGE - CHUNK_SIZE)
        self.assertIsNone(transport.producer)
        self.discarded()

    def test_file_missing(self):
        """A row naming a file that is gone fails the read with DamagedEntry, and is discarded."""
        entry = self.put(KEY, body_of(LARGE))
        self.commit()
        self.body_file(KEY).remove()
        self.reopen()
        self.assertEqual(self.store.get(KEY), entry)
        self.failureResultOf(self.store.read(entry, StringTransport()), DamagedEntry)
        self.discarded()

    def test_other_entrys_file(self):
        """A row naming another entry's file is discarded when looked up, and the other entry's file is left alone."""
        third = self.put(b"third", body_of(LARGE, seed=3))
        self.put(KEY, body_of(LARGE))
        self.commit()
        self.set_row(KEY, file=self.row(b"third", "file")[0])
        self.reopen()
        self.assertIsNone(self.store.get(KEY))
        self.commit()
        self.assertEqual(self.fetch(self.store.get(b"third")), body_of(LARGE, seed=3))
        self.assertEqual(self.store.get(b"third"), third)

    def test_file_outside_bodies(self):
        """A row naming a path outside bodies/ is discarded without opening or deleting that path."""
        self.put(KEY, body_of(LARGE))
        self.commit()
        outside = self.store.path.sibling("precious")
        outside.setContent(body_of(LARGE))
        for path in ("../precious", outside.path, "bodies/../../precious"):
            self.set_row(KEY, file=path)
            self.reopen()
            self.assertIsNone(self.store.get(KEY))
            self.commit()
            self.put(KEY, body_of(LARGE))
            self.commit()
        self.assertEqual(outside.getContent(), body_of(LARGE))

    def test_record_damaged_after_get(self):
        """A record damaged between get and read fails the read with DamagedEntry, and the entry is discarded."""
        entry = self.put(KEY, body_of(LARGE))
        self.commit()
        self.reopen()
        self.assertEqual(self.store.get(KEY), entry)
        self.set_row(KEY, record=b"garbage")
        self.failureResultOf(self.store.read(entry, StringTransport()), DamagedEntry)
        self.discarded()

    def test_old_version_damage(self):
        """Damage found in a version being read does not discard the newer version stored meanwhile."""
        body = body_of(LARGE)
        old = self.put(KEY, body)
        self.commit()
        transport = StringTransport()
        d = self.store.read(old, transport)
        with open(self.body_file(KEY).path, "r+b") as f:
            f.seek(10)
            f.write(bytes([body[10] ^ 0xFF]))
        new = self.put(KEY, body_of(LARGE, seed=1))
        self.run_turns()
        self.failureResultOf(d, DamagedEntry)
        self.assertEqual(self.store.get(KEY), new)
        self.assertEqual(self.fetch(new), body_of(LARGE, seed=1))
        self.commit()
        self.assert_files_named()


class IndexFileTests(StoreTestCase):
    """An index that cannot be used is set aside, or the store says why it cannot start."""

    def setUp(self):
        super().setUp()
        self.put(KEY, b"body")
        self.commit()
        self.shut(self.store)

    def test_not_a_database(self):
        """An index file that is no database is set aside as index.sqlite.old, warned of; the store starts empty."""
        self.path.child(INDEX).setContent(b"\0garbage" * 1000)
        self.store = self.open()
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(self.path.child(INDEX + ".old").getContent(), b"\0garbage" * 1000)
        self.assertEqual(len(self.events(LogLevel.warn)), 1)
        self.put(KEY, b"again")
        self.commit()
        self.assertEqual(self.fetch(self.reopen().get(KEY)), b"again")

    def test_other_version(self):
        """An index of another schema version is set aside, warned of, and a new one started."""
        db = self.db()
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
        self.store = self.open()
        self.assertIsNone(self.store.get(KEY))
        self.assertTrue(self.path.child(INDEX + ".old").exists())
        self.assertIn("version", self.logged[-1]["error"])

    def test_cannot_open(self):
        """An index that cannot be opened (a read-only directory) raises sqlite3.Error, and the index is kept."""

        def refuse(*args, **kwargs):
            raise sqlite3.OperationalError("unable to open database file")

        patched = self.patch(sqlite3, "connect", refuse)
        self.assertRaises(sqlite3.Error, SQLiteStore, self.path, MiB, self.clock)
        patched.restore()
        self.assertFalse(self.path.child(INDEX + ".old").exists())
        self.assertEqual(self.fetch(self.reopen().get(KEY)), b"body")


class FailureTests(StoreTestCase):
    """Writes the index refuses (read-only, disk full) are reported, and nothing stale is served."""

    def setUp(self):
        super().setUp()
        self.old = self.put(KEY, body_of(LARGE))
        self.commit()
        self.connection = self.faulty(self.store)

    def test_remove_refused(self):
        """A removal the index refuses raises EntryNotRemoved; this store serves the entry no more, reads included."""
        self.connection.fail(sqlite3.OperationalError("attempt to write a readonly database"), "DELETE")
        entry = self.store.get(KEY)
        error = self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.assertIn("readonly", str(error))
        self.assertIsNone(self.store.get(KEY))
        self.assertIsNone(self.store.get(KEY))
        self.assertIsNone(self.store.update(KEY, {"v": 2}))
        self.failureResultOf(self.store.read(entry, StringTransport()), DamagedEntry)
        # Still in the index, for others: which is why the removal failed.
        self.assertIsNotNone(self.open().get(KEY))

    def test_remove_commit_refused(self):
        """A removal whose commit fails raises EntryNotRemoved, logged, and the entry is not served."""
        self.connection.fail_commit = sqlite3.OperationalError("disk I/O error")
        self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(len(self.events(LogLevel.error)), 1)
        self.assertIsNotNone(self.row(KEY, "id"))

    def test_remove_again(self):
        """Once the index takes writes again, removing the entry succeeds and says it was there."""
        self.connection.fail(sqlite3.OperationalError("attempt to write a readonly database"), "DELETE")
        self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.connection.fail_statements = None
        self.assertTrue(self.store.remove(KEY))
        self.assertIsNone(self.row(KEY, "id"))
        self.commit()
        self.assertEqual(self.files(), [])

    def test_stored_again(self):
        """A new response stored after a refused removal is served: the old one is what was removed."""
        self.connection.fail(sqlite3.OperationalError("attempt to write a readonly database"), "DELETE")
        self.assertRaises(EntryNotRemoved, self.store.remove, KEY)
        self.connection.fail_statements = None
        self.put(KEY, b"new!")
        self.assertEqual(self.fetch(self.store.get(KEY)), b"new!")
        self.commit()
        self.assertEqual(self.fetch(self.store.get(KEY)), b"new!")

    def test_failed_turn(self):
        """A failed end-of-turn commit is logged and rolled back; entries of the turn are not served, older ones are."""
        self.put(b"new", b"body")
        replacement = self.put(KEY, body_of(LARGE, seed=1))
        self.assertIsNotNone(replacement)
        self.connection.fail_commit = sqlite3.OperationalError("database or disk is full")
        self.commit()
        self.assertEqual(self.events(LogLevel.error), ["could not save the cache index: {error}"])
        self.assertIsNone(self.store.get(b"new"))
        self.assertEqual(self.store.get(KEY), self.old)
        self.assertEqual(self.fetch(self.old), body_of(LARGE))
        self.connection.fail_commit = None
        self.assert_totals()

    def test_failed_turn_files(self):
        """A failed turn deletes no file a committed row names; the file of its lost version is swept by load."""
        self.put(KEY, body_of(LARGE, seed=1))
        self.connection.fail_commit = sqlite3.OperationalError("database or disk is full")
        self.commit()
        self.connection.fail_commit = None
        self.assertEqual(len(self.files()), 2)
        self.load()
        self.assert_files_named()

    def test_insert_refused(self):
        """A store the index refuses is logged, finish returns None, and the body's file is deleted."""
        self.connection.fail(sqlite3.OperationalError("database or disk is full"), "INSERT")
        self.assertIsNone(self.put(b"new", body_of(LARGE, seed=1)))
        self.assertIsNone(self.store.get(b"new"))
        self.connection.fail_statements = None
        self.commit()
        self.assert_files_named()
        self.assertEqual(len(self.events(LogLevel.error)), 1)

    def test_index_locked(self):
        """A store while the index is locked (another process's long turn) is logged; finish returns None, no file left."""
        self.connection.fail(sqlite3.OperationalError("database is locked"), "BEGIN")
        self.assertIsNone(self.put(b"new", body_of(LARGE, seed=1)))
        self.assertIsNone(self.put(b"small", b"body"))
        self.assertEqual(len(self.events(LogLevel.error)), 2)
        self.connection.fail_statements = None
        self.commit()
        self.assertIsNone(self.store.get(b"new"))
        self.assert_files_named()

    def test_touch_refused(self):
        """A use the index cannot record is logged, and the entry still served."""
        self.connection.fail(sqlite3.OperationalError("database is locked"), "UPDATE", "BEGIN")
        self.clock.advance(2 * TOUCH_INTERVAL)
        self.assertEqual(self.store.get(KEY), self.old)
        self.assertEqual(len(self.events(LogLevel.error)), 1)

    def test_read_refused(self):
        """An index that cannot be read is logged, and the entry not found."""
        self.reopen()
        self.faulty(self.store).fail(sqlite3.OperationalError("disk I/O error"), "SELECT")
        self.assertIsNone(self.store.get(KEY))
        self.assertEqual(len(self.events(LogLevel.error)), 1)


class HostileTests(StoreTestCase):
    """Keys, metadata and bodies at and past the limits."""

    def test_long_key(self):
        """A key of 100 KiB is stored, accounted with its record, and found after a restart."""
        key = b"https://example.com/" + b"k" * (100 * 1024)
        entry = self.put(key, b"body")
        self.assertEqual(self.store.size, 4 + len(encode_record(entry)))
        self.commit()
        self.reopen()
        self.assertEqual(self.store.get(key), entry)
        self.assertEqual(self.fetch(entry), b"body")
        self.assertIsNone(self.store.get(key[:-1]))
        self.assertNotIn(b"kkkk", self.row(key, "name")[0])

    def test_meta_not_json(self):
        """Metadata that is not JSON raises TypeError at finish: nothing is stored and no file is left."""
        for size in (10, LARGE):
            writer = self.store.writer(KEY, {"when": object()})
            writer.write(body_of(size))
            self.assertRaises(TypeError, writer.finish)
            self.commit()
            self.assertIsNone(self.store.get(KEY))
            self.assertEqual((len(self.store), self.store.size, self.files()), (0, 0, []))

    def test_meta_nan(self):
        """Metadata holding NaN, which JSON cannot carry, raises ValueError at finish; nothing is stored."""
        writer = self.store.writer(KEY, {"age": float("nan")})
        writer.write(body_of(LARGE))
        self.assertRaises(ValueError, writer.finish)
        self.commit()
        self.assertEqual((len(self.store), self.files()), (0, []))

    def test_meta_not_json_keeps_older(self):
        """A replacement refused for its metadata keeps the older entry."""
        old = self.put(KEY, body_of(LARGE))
        writer = self.store.writer(KEY, {"when": object()})
        writer.write(b"new")
        self.assertRaises(TypeError, writer.finish)
        self.assertEqual(self.store.get(KEY), old)

    def test_body_at_small_bound(self):
        """A body of exactly 64 KiB is kept in its row, with no file."""
        entry = self.put(KEY, body_of(SMALL_BODY))
        self.commit()
        self.assertEqual(self.row(KEY, "length(body)", "file"), (SMALL_BODY, None))
        self.assertEqual(self.files(), [])
        self.assertEqual(self.fetch(self.reopen().get(KEY)), body_of(SMALL_BODY))
        self.assertEqual(self.store.size, SMALL_BODY + len(encode_record(entry)))

    def test_body_one_over(self):
        """A body one byte over 64 KiB is kept in a file its row names, not in the row."""
        entry = self.put(KEY, body_of(SMALL_BODY + 1))
        self.commit()
        body, file = self.row(KEY, "body", "file")
        self.assertIsNone(body)
        self.assertEqual(self.files(), [file])
        self.assertEqual(self.fetch(self.reopen().get(KEY)), body_of(SMALL_BODY + 1))
        self.assertEqual(self.store.size, SMALL_BODY + 1 + len(encode_record(entry)))

    def test_record_past_max_size(self):
        """A body that fits max_size but not with its record is not stored, and its file deleted."""
        self.reopen(max_size=LARGE + 10)
        self.assertIsNone(self.put(KEY, body_of(LARGE)))
        self.commit()
        self.assertEqual((len(self.store), self.files()), (0, []))


class MemoryTests(StoreTestCase):
    """The memory tier holds what it can within memory_size; the index serves the rest."""

    def test_nothing_held(self):
        """With memory_size 0 every entry is still served, from the index, and none offered whole from memory."""
        self.reopen(memory_size=0)
        entry = self.put(KEY, body_of(1000))
        self.assertIsNone(self.store.held_body(entry))
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.fetch(entry), body_of(1000))

    def test_held_after_restart(self):
        """A small entry found after a restart is held with its body, for sending at once."""
        entry = self.put(KEY, body_of(1000))
        self.commit()
        self.reopen()
        self.assertIsNone(self.store.held_body(entry))
        self.assertEqual(self.store.get(KEY), entry)
        self.assertEqual(self.store.held_body(entry), body_of(1000))

    def test_kept_body_accounted(self):
        """A small body read from a file (a row written so) is held once checked, its cost counted once."""
        body = b"0123456789"
        path = new_body_file(entry_name(KEY))
        self.path.preauthChild(path).parent().makedirs(ignoreExistingDirectory=True)
        self.path.preauthChild(path).setContent(body)
        entry = Entry(KEY, META, len(body), zlib.crc32(body))
        record = encode_record(entry)
        self.db().execute("INSERT INTO entries (name, used, size, record, file) VALUES (?, 0, ?, ?, ?)",
                          (entry_name(KEY), len(body) + len(record), record, path))
        self.assertEqual(self.store.get(KEY), entry)
        self.assertIsNone(self.store.held_body(entry))
        self.assertEqual(self.fetch(entry), body)
        self.assertEqual(self.store.held_body(entry), body)
        hot = self.store._hot
        self.assertEqual(hot._size, sum(held.cost for held in hot._held.values()))

    def test_memory_size_real(self):
        """memory_size bounds what holding the records of many small entries really grows the heap by."""
        meta = {**META, "headers": [["Content-Type", "text/plain"], ["Date", "Sat, 21 Nov 2026 19:00:00 GMT"],
                                    ["Cache-Control", "max-age=3600"], ["ETag", '"abcdef"']]}
        keys = [b"http://example.com:80/%d" % (number,) for number in range(2000)]
        for key in keys:
            self.put(key, b"x", meta=meta)
        self.commit()
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


class FollowTests(StoreTestCase):
    """Followers of a body being stored get it whole, whatever happens to the entry after finish."""

    def follow_behind(self, store):
        """Write a large body, follow it a chunk behind, and finish. :returns: the body, the Deferred and the transport."""
        body = body_of(LARGE)
        writer = store.writer(KEY, META)
        writer.write(body)
        transport = StringTransport()
        d = writer.follow(transport)
        self.turn()
        writer.finish()
        return body, d, transport

    def test_removed_after_finish(self):
        """A follower behind still sends the whole body when the entry is removed after finish."""
        body, d, transport = self.follow_behind(self.store)
        self.assertTrue(self.store.remove(KEY))
        self.commit()
        self.assertEqual(self.files(), [])
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)

    def test_evicted_after_finish(self):
        """A follower behind still sends the whole body when the entry is evicted after finish."""
        self.reopen(max_size=LARGE + 2000)
        body, d, transport = self.follow_behind(self.store)
        self.put(b"other", body_of(LARGE, seed=1))
        self.commit()
        self.assertIsNone(self.store.get(KEY))
        self.run_turns()
        self.successResultOf(d)
        self.assertEqual(transport.value(), body)

    def test_disk_full_keeps_older(self):
        """A write error (disk full) abandons the new body and its file; the older entry stays."""
        old = self.put(KEY, b"old")
        writer = self.store.writer(KEY, {"v": 2})
        writer.write(body_of(SMALL_BODY))

        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        patched = self.patch(os, "write", full)
        writer.write(b"more")
        patched.restore()
        self.assertIsNone(writer.finish())
        self.assertEqual(self.files(), [])
        self.assertEqual(self.store.get(KEY), old)

    def test_temporary_name(self):
        """A body being written is in a temporary file of this process, out of every row until finish."""
        writer = self.store.writer(KEY, META)
        writer.write(body_of(SMALL_BODY + 1))
        [temp] = self.files()
        self.assertEqual(temp, temporary(temp[: -len(f".{os.getpid()}.tmp")]))
        self.assertIsNone(self.row(KEY, "id"))
        writer.finish()
        self.commit()
        self.assertEqual(self.files(), [temp[: -len(f".{os.getpid()}.tmp")]])


class ClockTests(SynchronousTestCase):
    """Stores in separate processes keep their own clocks; the index orders uses by their times."""

    def test_separate_clocks(self):
        """A use recorded by a store whose clock is later makes its entry the most recently used for all."""
        path = FilePath(self.mktemp())
        early, late = Clock(), Clock()
        late.advance(100)
        one = SQLiteStore(path, MiB, early)
        self.addCleanup(one.close)
        for key in (b"a", b"b"):
            writer = one.writer(key, META)
            writer.write(b"x" * 1000)
            writer.finish()
        one.flush()
        two = SQLiteStore(path, MiB, late)
        self.addCleanup(two.close)
        two.get(b"a")
        two.flush()
        one.max_size = one.size - 1
        writer = one.writer(b"c", META)
        writer.write(b"")
        writer.finish()
        self.assertEqual([one.get(k) is not None for k in (b"a", b"b", b"c")], [True, False, True])
