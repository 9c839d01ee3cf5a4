"""
Tests for L{netproxy.http.cache.sqlite_index}: the rows of a cache
directory's entries in one SQLite database, the totals its triggers keep,
the writes of a turn committed at its end, and setting aside an index that
cannot be read, driven without a store.
"""

import os
import random
import sqlite3

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.sqlite_index import Evicted, Index, Row
from netproxy.http.cache.sqlite_schema import open_index
from tests.cache_helpers import FaultyConnection

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


class IndexTestCase(SynchronousTestCase):
    """
    An index in a directory of its own, its clock C{self.clock}, the errors
    of its failed commits in C{self.failed}, its logged events in
    C{self.events}.
    """

    def setUp(self):
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.path = self.directory.child("index.sqlite").path
        self.clock = Clock()
        self.failed = []
        self.events = []
        self.log = Logger(observer=self.events.append)

    def connect(self):
        """:returns: a connection opened by L{open_index}, closed at the end of the test."""
        db = open_index(self.path, self.log)
        self.addCleanup(db.close)
        return db

    def index(self, db=None):
        """:returns: an L{Index} on C{db}, or on a new connection."""
        return Index(self.connect() if db is None else db, self.clock, self.failed.append)

    def other(self):
        """:returns: a plain connection to the index, as another process would have."""
        db = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(db.close)
        return db

    def counted(self, db):
        """:returns: the bytes and entries of C{db}'s rows, summed."""
        size, count = db.execute("SELECT coalesce(sum(size), 0), count(*) FROM entries").fetchone()
        return size, count

    def warnings(self):
        """:returns: the events logged at level warn."""
        return [event for event in self.events if event["log_level"] == LogLevel.warn]


class RowTests(IndexTestCase):
    """Rows are stored, found, replaced, touched and removed."""

    def setUp(self):
        super().setUp()
        self.db = self.connect()
        self.index = self.index(self.db)

    def test_put_find(self):
        """A row put is found by its name, with its id, use, record and body or file."""
        id, replaced = self.index.put(A, 5.0, 14, b"{record}", b"body", None)
        self.assertIsNone(replaced)
        self.assertEqual(self.index.find(A), Row(id, 5.0, b"{record}", b"body", None))
        self.index.put(B, 6.0, 100, b"{other}", None, "bodies/bb/file")
        self.assertEqual(self.index.find(B)[3:], (None, "bodies/bb/file"))
        self.assertIsNone(self.index.find(C))
        self.assertEqual(self.index.current(A), id)
        self.assertIsNone(self.index.current(C))

    def test_replace(self):
        """A row put again for a name replaces the old, with a new id, and returns the old one's file."""
        first, _ = self.index.put(A, 1.0, 10, b"{1}", None, "bodies/aa/one")
        second, replaced = self.index.put(A, 2.0, 20, b"{2}", None, "bodies/aa/two")
        self.assertNotEqual(first, second)
        self.assertEqual(replaced, "bodies/aa/one")
        self.assertEqual(self.index.find(A).file, "bodies/aa/two")
        self.assertEqual(self.index.totals(), (20, 1))
        self.assertEqual(self.index.put(A, 3.0, 5, b"{3}", b"x", None)[1], "bodies/aa/two")
        self.assertIsNone(self.index.put(A, 4.0, 5, b"{4}", b"y", None)[1])

    def test_ids_never_reused(self):
        """A row's id is never given again, even once the row with the largest id is deleted."""
        first, _ = self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.remove(A)
        second, _ = self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.commit()
        self.index.remove(A)
        self.index.commit()
        third, _ = self.index.put(B, 1.0, 10, b"{}", b"", None)
        self.assertEqual(len({first, second, third}), 3)

    def test_replace_record(self):
        """replace_record gives a row a new record, size, use and id, keeping its body; None for a row gone."""
        id, _ = self.index.put(A, 1.0, 10, b"{1}", b"body", None)
        self.index.put(B, 1.0, 10, b"{}", None, "bodies/bb/b")
        new = self.index.replace_record(id, 7.0, 30, b"{longer}")
        self.assertNotIn(new, (None, id))
        self.assertEqual(self.index.find(A), Row(new, 7.0, b"{longer}", b"body", None))
        self.assertEqual(self.index.totals(), (40, 2))
        self.assertIsNone(self.index.replace_record(id, 8.0, 40, b"{}"))
        self.assertEqual(self.index.totals(), (40, 2))
        b = self.index.find(B).id
        self.assertEqual(self.index.find(B)[1:], (1.0, b"{}", None, "bodies/bb/b"))
        self.assertIsNotNone(self.index.replace_record(b, 2.0, 10, b"{2}"))
        self.assertEqual(self.index.find(B)[3:], (None, "bodies/bb/b"))
        self.assertEqual(self.index.totals(), self.counted(self.db))

    def test_touch(self):
        """touch records a use, changing nothing else."""
        id, _ = self.index.put(A, 1.0, 10, b"{1}", b"body", None)
        self.index.touch(id, 9.0)
        self.assertEqual(self.index.find(A), Row(id, 9.0, b"{1}", b"body", None))
        self.assertEqual(self.index.totals(), (10, 1))

    def test_remove(self):
        """remove deletes a row by name and returns its name and file; None when there was none."""
        self.index.put(A, 1.0, 10, b"{}", None, "bodies/aa/f")
        self.assertEqual(self.index.remove(A), Evicted(A, "bodies/aa/f"))
        self.assertIsNone(self.index.find(A))
        self.assertIsNone(self.index.remove(A))
        self.assertEqual(self.index.totals(), (0, 0))

    def test_remove_version(self):
        """remove with an id deletes only that version: a newer row for the name stays."""
        old, _ = self.index.put(A, 1.0, 10, b"{old}", b"old", None)
        new, _ = self.index.put(A, 2.0, 10, b"{new}", b"new", None)
        self.assertIsNone(self.index.remove(A, old))
        self.assertEqual(self.index.find(A).id, new)
        self.assertEqual(self.index.remove(A, new), Evicted(A, None))
        self.assertEqual(self.index.totals(), (0, 0))

    def test_referenced(self):
        """referenced is true only for the file of the current row of a name."""
        self.index.put(A, 1.0, 10, b"{}", None, "bodies/aa/one")
        self.assertTrue(self.index.referenced(A, "bodies/aa/one"))
        self.assertFalse(self.index.referenced(A, "bodies/aa/two"))
        self.assertFalse(self.index.referenced(B, "bodies/aa/one"))

    def test_long_values(self):
        """A record of 150 KiB and a body of 64 KiB fit in a row (overflow pages) and are read back whole."""
        record, body = os.urandom(150 * 1024), os.urandom(64 * 1024)
        self.index.put(A, 1.0, len(record) + len(body), record, body, None)
        self.index.commit()
        self.assertEqual(self.index.find(A)[2:4], (record, body))

    def test_sizes_from_other_process(self):
        """totals, outside a transaction, include what another process committed."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.commit()
        other = self.other()
        other.execute("INSERT INTO entries (name, used, size, record) VALUES (?, 2.0, 5, x'7b7d')", (B,))
        self.assertEqual(self.index.totals(), (15, 2))


class EvictTests(IndexTestCase):
    """evict deletes the least recently used rows until enough bytes are freed."""

    def setUp(self):
        super().setUp()
        self.index = self.index()

    def test_order(self):
        """The least recently used go first, enough of them to free the excess, and are returned with their files."""
        self.index.put(A, 3.0, 10, b"{}", None, "bodies/aa/a")
        self.index.put(B, 1.0, 10, b"{}", None, "bodies/bb/b")
        self.index.put(C, 2.0, 10, b"{}", b"", None)
        self.assertEqual(self.index.evict(11), [Evicted(B, "bodies/bb/b"), Evicted(C, None)])
        self.assertIsNotNone(self.index.find(A))
        self.assertEqual(self.index.totals(), (10, 1))

    def test_ties(self):
        """Rows used at the same time go in the order they were stored."""
        for name in (C, A, B):
            self.index.put(name, 1.0, 10, b"{}", b"", None)
        self.assertEqual([e.name for e in self.index.evict(30)], [C, A, B])

    def test_touch_reorders(self):
        """A row touched since goes after those used less recently."""
        a, _ = self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.put(B, 2.0, 10, b"{}", b"", None)
        self.index.touch(a, 3.0)
        self.assertEqual(self.index.evict(1), [Evicted(B, None)])

    def test_everything(self):
        """An excess larger than all the rows evicts them all."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.put(B, 2.0, 10, b"{}", b"", None)
        self.assertEqual(len(self.index.evict(1000)), 2)
        self.assertEqual(self.index.totals(), (0, 0))
        self.assertEqual(self.index.evict(1), [])


class TurnTests(IndexTestCase):
    """The writes of a reactor turn are committed at its end, in one transaction."""

    def setUp(self):
        super().setUp()
        self.db = FaultyConnection(self.connect())
        self.index = self.index(self.db)
        self.reader = self.other()

    def committed(self):
        """:returns: the names of the rows another process sees."""
        return sorted(name for (name,) in self.reader.execute("SELECT name FROM entries"))

    def test_end_of_turn(self):
        """Writes are seen at once by this connection, by others once the turn ends; one commit per turn."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.put(B, 1.0, 10, b"{}", b"", None)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertIsNotNone(self.index.find(A))
        self.assertEqual(self.committed(), [])
        self.clock.advance(0)
        self.assertEqual(self.committed(), [A, B])
        self.assertFalse(self.db.in_transaction)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reads_write_nothing(self):
        """Reads open no transaction and schedule no commit."""
        self.index.find(A)
        self.index.current(A)
        self.index.totals()
        self.index.referenced(A, "f")
        self.assertEqual((self.db.in_transaction, self.clock.getDelayedCalls()), (False, []))

    def test_commit_now(self):
        """commit makes the turn's writes seen at once, and cancels the end-of-turn commit."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.commit()
        self.assertEqual(self.committed(), [A])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.index.commit()

    def test_after_commit(self):
        """Calls registered with after_commit are made once committed, in order, and once."""
        calls = []
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.after_commit(lambda: calls.append(self.committed()))
        self.index.after_commit(lambda: calls.append("second"))
        self.assertEqual(calls, [])
        self.clock.advance(0)
        self.assertEqual(calls, [[A], "second"])
        self.index.commit()
        self.assertEqual(len(calls), 2)

    def test_after_commit_alone(self):
        """after_commit in a turn that wrote nothing else still has its call made at the turn's end."""
        calls = []
        self.index.after_commit(lambda: calls.append(1))
        self.clock.advance(0)
        self.assertEqual(calls, [1])

    def test_totals_in_turn(self):
        """totals follow the turn's changes as they are made, and match the rows after the commit."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.assertEqual(self.index.totals(), (10, 1))
        self.index.put(B, 1.0, 20, b"{}", b"", None)
        self.index.put(A, 1.0, 5, b"{}", b"", None)
        self.assertEqual(self.index.totals(), (25, 2))
        self.index.remove(B)
        self.assertEqual(self.index.totals(), (5, 1))
        self.clock.advance(0)
        self.assertEqual(self.index.totals(), (5, 1))
        self.assertEqual(self.reader.execute("SELECT bytes, entries FROM totals").fetchone(), (5, 1))

    def test_failed_commit(self):
        """A failed commit is rolled back, reported to failed and raised; the after-commit calls are dropped."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.clock.advance(0)
        calls = []
        self.index.put(B, 1.0, 10, b"{}", b"", None)
        self.index.remove(A)
        self.index.after_commit(lambda: calls.append(1))
        self.db.fail_commit = sqlite3.OperationalError("disk I/O error")
        self.assertRaises(sqlite3.OperationalError, self.index.commit)
        self.assertEqual(self.failed, [self.db.fail_commit])
        self.assertEqual(calls, [])
        self.assertFalse(self.db.in_transaction)
        self.assertIsNotNone(self.index.find(A))
        self.assertIsNone(self.index.find(B))
        self.assertEqual(self.index.totals(), (10, 1))

    def test_failed_end_of_turn(self):
        """A failed end-of-turn commit is reported to failed, not raised into the reactor, and the next turn works."""
        self.db.fail_commit = sqlite3.OperationalError("database or disk is full")
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.clock.advance(0)
        self.assertEqual(len(self.failed), 1)
        self.assertIsNone(self.index.find(A))
        self.db.fail_commit = None
        self.index.put(B, 1.0, 10, b"{}", b"", None)
        self.clock.advance(0)
        self.assertEqual(self.committed(), [B])
        self.assertEqual(self.index.totals(), (10, 1))

    def test_close_commits(self):
        """close commits what the turn wrote."""
        self.index.put(A, 1.0, 10, b"{}", b"", None)
        self.index.close()
        self.assertEqual(self.committed(), [A])


class TotalsPropertyTests(IndexTestCase):
    """Whatever the changes, the totals are the sums of the rows."""

    def test_random_changes(self):
        """After each of 600 random changes (fixed seed), in and out of transactions, totals equal the rows' sums."""
        rng = random.Random(1604)
        db = self.connect()
        index = self.index(db)
        reader = self.other()
        names = [bytes([i]) * 32 for i in range(12)]
        for step in range(600):
            action = rng.choice(("put", "put", "record", "touch", "remove", "remove_id", "evict", "commit"))
            name = rng.choice(names)
            row = index.find(name)
            if action == "put":
                index.put(name, rng.random(), rng.randrange(0, 5000), b"{}", b"", rng.choice((None, "f")))
            elif action == "record" and row is not None:
                index.replace_record(row.id, rng.random(), rng.randrange(0, 5000), b"{}")
            elif action == "touch" and row is not None:
                index.touch(row.id, rng.random())
            elif action == "remove":
                index.remove(name)
            elif action == "remove_id" and row is not None:
                index.remove(name, row.id + rng.choice((0, 1)))
            elif action == "evict":
                index.evict(rng.randrange(0, 8000))
            elif action == "commit":
                self.clock.advance(0)
            self.assertEqual(index.totals(), self.counted(db), f"step {step}: {action}")
        self.clock.advance(0)
        self.assertEqual(reader.execute("SELECT bytes, entries FROM totals").fetchone(), self.counted(reader))
        self.assertEqual(index.totals(), self.counted(reader))
