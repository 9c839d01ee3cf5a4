"""
Tests for L{netproxy.http.cache.sqlite_schema}: opening, creating and
setting aside the index's file.
"""

import os
import sqlite3

from twisted.python.filepath import FilePath

from netproxy.http.cache.sqlite_schema import PAGE_SIZE, SCHEMA_VERSION, open_index
from tests.http.cache.test_sqlite_index import A, IndexTestCase


class OpenTests(IndexTestCase):
    """L{open_index} opens or creates an index, and sets aside one it cannot read."""

    def test_created(self):
        """A missing index is created: WAL mode, 8 KiB pages, this schema's version, no entries."""
        db = self.connect()
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(db.execute("PRAGMA page_size").fetchone()[0], PAGE_SIZE)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(db.execute("SELECT bytes, entries FROM totals").fetchone(), (0, 0))
        self.assertEqual(self.events, [])

    def test_reopened(self):
        """An index opened again keeps its rows and totals, and no warning."""
        index = self.index()
        index.put(A, 1.0, 10, b"{}", b"body", None)
        index.close()
        index = self.index()
        self.assertEqual(index.find(A).body, b"body")
        self.assertEqual(index.totals(), (10, 1))
        self.assertEqual(self.events, [])

    def test_not_a_database(self):
        """A file that is no database is set aside as .old, warned of, and a new index started in its place."""
        for suffix, content in (("", b"garbage " * 1000), ("-wal", b"wal"), ("-shm", b"shm")):
            FilePath(self.path + suffix).setContent(content)
        index = self.index()
        self.assertEqual(index.totals(), (0, 0))
        index.put(A, 1.0, 10, b"{}", b"body", None)
        index.commit()
        self.assertEqual(FilePath(self.path + ".old").getContent(), b"garbage " * 1000)
        [warning] = self.warnings()
        self.assertEqual(warning["path"], self.path)
        self.assertIn("not a database", warning["error"])

    def test_cannot_set_aside(self):
        """A damaged index that cannot be renamed (a read-only directory) raises sqlite3.Error, the store's error."""
        FilePath(self.path).setContent(b"garbage " * 1000)

        def refuse(source, destination):
            raise PermissionError(13, "Permission denied")

        self.patch(os, "replace", refuse)
        error = self.assertRaises(sqlite3.OperationalError, open_index, self.path, self.log)
        self.assertIn("could not set aside", str(error))
        self.assertEqual(FilePath(self.path).getContent(), b"garbage " * 1000)

    def test_empty_file(self):
        """An empty file (a crash as the index was created) is taken for a new index."""
        FilePath(self.path).setContent(b"")
        db = self.connect()
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)

    def test_other_version(self):
        """An index of another schema version is set aside, warned of with both versions, and a new one started."""
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE entries (other TEXT)")
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        index = self.index()
        self.assertIsNone(index.find(A))
        self.assertEqual(index.totals(), (0, 0))
        [warning] = self.warnings()
        self.assertIn(f"version 99, not {SCHEMA_VERSION}", warning["error"])
        old = sqlite3.connect(self.path + ".old")
        self.addCleanup(old.close)
        self.assertEqual(old.execute("PRAGMA user_version").fetchone()[0], 99)

    def test_foreign_database(self):
        """A database of another program (version 0, tables of its own) is set aside, not written into."""
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE entries (name TEXT, other TEXT)")
        db.execute("INSERT INTO entries VALUES ('theirs', 'data')")
        db.commit()
        db.close()
        index = self.index()
        self.assertEqual(index.totals(), (0, 0))
        self.assertEqual(len(self.warnings()), 1)
        old = sqlite3.connect(self.path + ".old")
        self.addCleanup(old.close)
        self.assertEqual(old.execute("SELECT * FROM entries").fetchall(), [("theirs", "data")])

    def test_cannot_open(self):
        """An index that cannot be opened (a read-only directory, a lock, I/O) raises sqlite3.Error and is kept."""
        index = self.index()
        index.put(A, 1.0, 10, b"{}", b"body", None)
        index.close()

        def refuse(*args, **kwargs):
            raise sqlite3.OperationalError("unable to open database file")

        self.patch(sqlite3, "connect", refuse)
        self.assertRaises(sqlite3.Error, open_index, self.path, self.log)
        self.assertFalse(os.path.exists(self.path + ".old"))
        self.assertEqual(self.warnings(), [])

    def test_cannot_create(self):
        """No index can be created where the directory is missing: sqlite3.Error."""
        self.assertRaises(sqlite3.Error, open_index, self.directory.child("missing").child("index").path, self.log)

    def test_sqlite_too_old(self):
        """An SQLite without DELETE ... RETURNING (before 3.35) is refused, naming its version."""
        self.patch(sqlite3, "sqlite_version_info", (3, 34, 1))
        self.patch(sqlite3, "sqlite_version", "3.34.1")
        error = self.assertRaises(sqlite3.NotSupportedError, open_index, self.path, self.log)
        self.assertIn("3.34.1", str(error))
