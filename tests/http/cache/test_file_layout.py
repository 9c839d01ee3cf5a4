"""
Tests for L{netproxy.http.cache.file_layout}: where a file store's entries
live on disk, the atomic write of a record, and the scan of the directory at
start-up, driven without a store.
"""

import hashlib
import os

from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache import file_layout
from netproxy.http.cache.file_layout import (
    BODY,
    LOAD_BATCH,
    META,
    TEMP,
    entry_file,
    file_name,
    remove,
    retire_record,
    scan,
    write_record,
)
from tests.cache_helpers import KEY


class LayoutTestCase(SynchronousTestCase):
    """
    A cache directory, and a logger whose events the test reads in
    C{self.events}.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.events = []
        self.log = Logger(observer=self.events.append)

    def entry(self, key, body=b"body", record=b"{}"):
        """
        Write the files of an entry for C{key}, either left out when L{None}.

        :returns: its name.
        """
        name = file_name(key)
        self.root.child(name[:2]).makedirs(ignoreExistingDirectory=True)
        if body is not None:
            entry_file(self.root, name, BODY).setContent(body)
        if record is not None:
            entry_file(self.root, name, META).setContent(record)
        return name

    def files(self):
        """:returns: the paths of the files in the cache directory, relative to it."""
        return sorted("/".join(p.segmentsFrom(self.root)) for p in self.root.walk() if p.isfile())


class NameTests(LayoutTestCase):
    """Entries are named after their key's hash, and sharded by its first two digits."""

    def test_file_name(self):
        """A key's name is its SHA-256 in hex."""
        self.assertEqual(file_name(KEY), hashlib.sha256(KEY).hexdigest())

    def test_entry_file(self):
        """An entry's files are in the directory named after its name's first two digits."""
        name = file_name(KEY)
        self.assertEqual(entry_file(self.root, name, META), self.root.child(name[:2]).child(name + ".meta"))
        self.assertEqual(entry_file(self.root, name, BODY).basename(), name + ".body")


class RemoveTests(LayoutTestCase):
    """L{remove} deletes a file and says whether it was there."""

    def test_existing(self):
        """An existing file is deleted: True."""
        path = self.root.child("f")
        path.setContent(b"x")
        self.assertTrue(remove(path, self.log))
        self.assertFalse(path.exists())

    def test_missing(self):
        """A missing file: False, and nothing logged."""
        self.assertFalse(remove(self.root.child("missing"), self.log))
        self.assertEqual(self.events, [])

    def test_error_logged(self):
        """A file that cannot be deleted is logged as an error, and counted as existing."""
        path = self.root.child("f")

        def refuse():
            raise PermissionError(13, "Permission denied")

        path.remove = refuse
        self.assertTrue(remove(path, self.log))
        [event] = self.events
        self.assertEqual(event["log_format"], "could not delete {path}: {error}")
        self.assertEqual(event["path"], path.path)


class RetireRecordTests(LayoutTestCase):
    """L{retire_record} removes a record for good: deleted, or else emptied, or else an error."""

    def test_deleted(self):
        """A record that can be deleted is: True."""
        path = self.root.child("r")
        path.setContent(b"x")
        self.assertTrue(retire_record(path, self.log))
        self.assertFalse(path.exists())
        self.assertEqual(self.events, [])

    def test_missing(self):
        """No record: False, and no file is made."""
        path = self.root.child("missing")
        self.assertFalse(retire_record(path, self.log))
        self.assertFalse(path.exists())

    def test_emptied(self):
        """A record that cannot be deleted is emptied (a tombstone), and the failed delete logged: True."""
        path = self.root.child("r")
        path.setContent(b"record")

        def refuse():
            raise PermissionError(13, "Permission denied")

        path.remove = refuse
        self.assertTrue(retire_record(path, self.log))
        self.assertEqual(path.getContent(), b"")
        [event] = self.events
        self.assertEqual(event["log_format"], "could not delete {path} ({error}): emptied it instead")

    def test_neither(self):
        """A record that can be neither deleted nor emptied raises the deletion's error, and stays."""
        path = self.root.child("r")
        path.setContent(b"record")

        def refuse():
            raise PermissionError(13, "Permission denied")

        def read_only(name, length):
            raise OSError(30, "Read-only file system")

        path.remove = refuse
        self.patch(os, "truncate", read_only)
        error = self.assertRaises(PermissionError, retire_record, path, self.log)
        self.assertEqual(error.strerror, "Permission denied")
        self.assertEqual(path.getContent(), b"record")


class WriteRecordTests(LayoutTestCase):
    """L{write_record} puts a record in place at once, with its time of use."""

    def test_written(self):
        """The record is in place, with the given time as its mtime, and no temporary file is left."""
        path = self.root.child("r" + META)
        write_record(path, b'{"v":1}', 1000.0, self.log)
        self.assertEqual(path.getContent(), b'{"v":1}')
        self.assertEqual(os.stat(path.path).st_mtime, 1000.0)
        self.assertEqual(self.files(), ["r.meta"])

    def test_replaces(self):
        """A record replaces the one in place."""
        path = self.root.child("r" + META)
        write_record(path, b"old", 1.0, self.log)
        write_record(path, b"new", 2.0, self.log)
        self.assertEqual(path.getContent(), b"new")

    def test_failure(self):
        """A record that cannot be written raises OSError and leaves nothing behind."""
        path = self.root.child("missing").child("r" + META)
        self.assertRaises(OSError, write_record, path, b"{}", 1.0, self.log)
        self.assertEqual(self.files(), [])


class ScanTests(LayoutTestCase):
    """L{scan} finds the entries on disk, and clears away what a crash left."""

    def run_scan(self, writing=(), indexed=()):
        """
        Scan to the end.

        :returns: C{(found, deleted, steps)}: what was found, the names
            passed to C{delete}, and how many steps it took.
        """
        found, deleted = {}, []
        steps = scan(self.root, set(writing), set(indexed), found, deleted.append, self.log)
        return found, deleted, len(list(steps))

    def test_entries_found(self):
        """Each entry is found with its record's mtime and its size, body plus record."""
        name = self.entry(KEY, body=b"0123456789", record=b"{}")
        os.utime(entry_file(self.root, name, META).path, (500.0, 500.0))
        found, deleted, steps = self.run_scan()
        self.assertEqual((found, deleted), ({name: (500.0, 12)}, []))
        self.assertEqual(self.files(), [f"{name[:2]}/{name}.body", f"{name[:2]}/{name}.meta"])

    def test_indexed_skipped(self):
        """An entry already indexed is left to the index."""
        self.entry(KEY)
        found, deleted, steps = self.run_scan(indexed=[file_name(KEY)])
        self.assertEqual(found, {})
        self.assertEqual(len(self.files()), 2)

    def test_record_without_body(self):
        """An entry whose body is missing is handed to delete, and not found."""
        name = self.entry(KEY, body=None)
        found, deleted, steps = self.run_scan()
        self.assertEqual((found, deleted), ({}, [name]))

    def test_tombstone(self):
        """An emptied record (a removed entry) is handed to delete, and not found."""
        name = self.entry(KEY, record=b"")
        found, deleted, steps = self.run_scan()
        self.assertEqual((found, deleted), ({}, [name]))

    def test_body_without_record(self):
        """A body without a record is removed."""
        self.entry(KEY, record=None)
        found, deleted, steps = self.run_scan()
        self.assertEqual((found, deleted, self.files()), ({}, [], []))

    def test_temporary_files(self):
        """Temporary files are removed, except those being written."""
        name = self.entry(KEY)
        shard = self.root.child(name[:2])
        crashed = shard.child("crashed" + name + BODY + TEMP)
        busy = shard.child("busy" + name + BODY + TEMP)
        crashed.setContent(b"partial")
        busy.setContent(b"partial")
        found, deleted, steps = self.run_scan(writing=[busy.path])
        self.assertFalse(crashed.exists())
        self.assertTrue(busy.exists())
        self.assertEqual(list(found), [name])

    def test_other_files_left(self):
        """Files and directories not named as the store names them are left alone."""
        self.root.child("notes").setContent(b"mine")
        self.root.child("zz").makedirs()
        self.root.child("ab").makedirs()
        self.root.child("ab").child("readme.body").setContent(b"mine")
        found, deleted, steps = self.run_scan()
        self.assertEqual(found, {})
        self.assertEqual(self.files(), ["ab/readme.body", "notes"])

    def test_batches(self):
        """The scan takes a step per LOAD_BATCH files of each shard."""
        self.patch(file_layout, "LOAD_BATCH", 2)
        keys = [b"key%d" % (i,) for i in range(40)]
        names = [self.entry(key) for key in keys]
        shards = {name[:2] for name in names}
        found, deleted, steps = self.run_scan()
        self.assertEqual(sorted(found), sorted(names))
        self.assertEqual(steps, sum(-(-len(self.root.child(s).listdir()) // 2) for s in shards))
        self.assertGreater(steps, len(shards))
        self.assertEqual(LOAD_BATCH, 100)

    def test_missing_directory(self):
        """A cache directory that cannot be listed is logged, and the scan ends at once."""
        self.root.remove()
        found, deleted, steps = self.run_scan()
        self.assertEqual((found, deleted, steps), ({}, [], 0))
        [event] = self.events
        self.assertEqual(event["log_format"], "could not list cache directory {path}: {error}")
