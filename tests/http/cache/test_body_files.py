"""
Tests for L{netproxy.http.cache.body_files}: how the SQLite store names,
creates and deletes the files of large bodies, and the sweep at start-up of
what a crash or the older layout left, driven without a store.
"""

import errno
import hashlib
import os
import re
import stat

from twisted.logger import Logger, LogLevel
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache import body_files
from netproxy.http.cache.body_files import BODIES, SWEEP_BATCH, create, delete, new_body_file, sweep, temporary
from tests.cache_helpers import KEY

NAME = hashlib.sha256(KEY).digest()
#: A process id above the kernel's largest (pid_max is at most 2 ** 22):
#: never a running process.
DEAD_PID = 2**22 + 1


class FilesTestCase(SynchronousTestCase):
    """
    A cache directory, and a logger whose events the test reads in
    C{self.events}.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.events = []
        self.log = Logger(observer=self.events.append)

    def write(self, relative, content=b"body", mtime=None):
        """Write the file C{relative} under the cache directory, and its directories."""
        path = self.root.preauthChild(relative)
        path.parent().makedirs(ignoreExistingDirectory=True)
        path.setContent(content)
        if mtime is not None:
            os.utime(path.path, (mtime, mtime))
        return relative

    def files(self):
        """:returns: the paths of the files in the cache directory, relative to it."""
        return sorted("/".join(p.segmentsFrom(self.root)) for p in self.root.walk() if p.isfile())

    def directories(self):
        """:returns: the paths of the directories in the cache directory, relative to it."""
        return sorted("/".join(p.segmentsFrom(self.root)) for p in self.root.walk() if p.isdir() and p != self.root)

    def errors(self):
        """:returns: the events logged at level error."""
        return [event for event in self.events if event["log_level"] == LogLevel.error]


class NamingTests(FilesTestCase):
    """Body files are named after their entry and a random version, sharded by the name's first byte."""

    def test_new_body_file(self):
        """A new body file is bodies/<first two hex digits>/<name in hex>-<8 random hex digits>."""
        path = new_body_file(NAME)
        hexname = NAME.hex()
        self.assertRegex(path, f"^{BODIES}/{hexname[:2]}/{hexname}-[0-9a-f]{{8}}$")

    def test_versions_differ(self):
        """Each new body file of one entry has a name of its own, so no reader's file is overwritten."""
        self.assertEqual(len({new_body_file(NAME) for _ in range(100)}), 100)

    def test_no_key_on_disk(self):
        """A body file's name holds the hash of the key, never the key."""
        self.assertNotIn("example", new_body_file(NAME))

    def test_temporary(self):
        """A body's temporary file is its path with this process's id and .tmp appended."""
        self.assertEqual(temporary("bodies/ab/x-01234567"), f"bodies/ab/x-01234567.{os.getpid()}.tmp")


class CreateTests(FilesTestCase):
    """L{create} makes a body's temporary file, and its directory if missing."""

    def test_creates_directory(self):
        """The shard's directory is made if missing, and the file is opened for writing, private to the user."""
        path = new_body_file(NAME)
        fd = create(self.root.path, path)
        try:
            os.write(fd, b"data")
        finally:
            os.close(fd)
        temp = self.root.preauthChild(temporary(path))
        self.assertEqual(temp.getContent(), b"data")
        self.assertEqual(stat.S_IMODE(os.stat(temp.path).st_mode), 0o600)

    def test_existing_directory(self):
        """A second file in an existing shard is created."""
        path = new_body_file(NAME)
        os.close(create(self.root.path, path))
        other = new_body_file(NAME)
        os.close(create(self.root.path, other))
        self.assertEqual(len(self.files()), 2)

    def test_never_overwrites(self):
        """An existing temporary file is never opened again: FileExistsError."""
        path = new_body_file(NAME)
        self.write(temporary(path), b"someone else's")
        self.assertRaises(FileExistsError, create, self.root.path, path)
        self.assertEqual(self.root.preauthChild(temporary(path)).getContent(), b"someone else's")

    def test_failure(self):
        """A file that cannot be created raises OSError (here the cache directory is a file)."""
        self.root.remove()
        self.root.setContent(b"a file, not a directory")
        self.assertRaises(OSError, create, self.root.path, new_body_file(NAME))


class DeleteTests(FilesTestCase):
    """L{delete} deletes a file, quietly when it is already gone."""

    def test_deleted(self):
        """A file is deleted, and nothing logged."""
        self.write("bodies/ab/f")
        delete(self.root.path, "bodies/ab/f", self.log)
        self.assertEqual((self.files(), self.events), ([], []))

    def test_missing(self):
        """A missing file is nothing to log."""
        delete(self.root.path, "bodies/ab/missing", self.log)
        self.assertEqual(self.events, [])

    def test_error_logged(self):
        """A file that cannot be deleted is logged as an error, naming it and why, and nothing is raised."""

        def refuse(path):
            raise PermissionError(errno.EACCES, "Permission denied")

        self.patch(os, "remove", refuse)
        delete(self.root.path, "bodies/ab/f", self.log)
        [error] = self.errors()
        self.assertEqual(error["path"], "bodies/ab/f")
        self.assertIn("Permission denied", error["error"])


class SweepTests(FilesTestCase):
    """L{sweep} deletes what no row names, what dead writers left, and the old layout; it leaves the rest."""

    def setUp(self):
        super().setUp()
        self.named = set()
        self.writing = set()
        self.asked = []

    def is_named(self, name, relative):
        self.asked.append((name, relative))
        return (name, relative) in self.named

    def sweep(self, not_after=float("inf")):
        """Run the sweep to its end. :returns: how many steps it took."""
        steps = sweep(self.root.path, self.is_named, self.writing, not_after, self.log)
        return sum(1 for _ in steps)

    def stored(self, name=NAME, named=False, mtime=None):
        """Write a stored body file of C{name}, named by a row if C{named}. :returns: its path."""
        path = self.write(new_body_file(name), mtime=mtime)
        if named:
            self.named.add((name, path))
        return path

    def test_named_kept(self):
        """A body file named by a row is kept, and the row was asked with the entry's name and the file's path."""
        path = self.stored(named=True)
        self.sweep()
        self.assertEqual(self.files(), [path])
        self.assertEqual(self.asked, [(NAME, path)])

    def test_orphan_deleted(self):
        """A body file no row names is deleted, and its emptied shard directory left for the next writer."""
        self.stored()
        self.sweep()
        self.assertEqual(self.files(), [])
        self.assertEqual(self.events, [])

    def test_old_version_deleted(self):
        """A body file of an entry whose row names another file (an older version) is deleted."""
        current = self.stored(named=True)
        self.stored()
        self.sweep()
        self.assertEqual(self.files(), [current])

    def test_young_kept(self):
        """A body file modified after not_after is kept, named or not: another process may be about to name it."""
        young = self.stored(mtime=2000)
        self.stored(mtime=1000)
        self.sweep(not_after=1500)
        self.assertEqual(self.files(), [young])

    def test_own_temporary(self):
        """This process's temporary files are deleted unless being written."""
        busy = self.write(temporary(new_body_file(NAME)))
        self.write(temporary(new_body_file(NAME)))
        self.writing.add(os.path.join(self.root.path, busy))
        self.sweep()
        self.assertEqual(self.files(), [busy])

    def test_dead_writer(self):
        """The temporary files of a process no longer running are deleted, whatever their age."""
        self.write(new_body_file(NAME) + f".{DEAD_PID}.tmp", mtime=2000)
        self.sweep(not_after=1000)
        self.assertEqual(self.files(), [])

    def test_live_writer(self):
        """The temporary files of another running process (here the parent) are kept."""
        alive = self.write(new_body_file(NAME) + f".{os.getppid()}.tmp")
        self.sweep()
        self.assertEqual(self.files(), [alive])

    def test_other_user_writer(self):
        """A writer whose process cannot be signalled (another user's) is taken as running: its file is kept."""

        def refuse(pid, signal):
            raise PermissionError(errno.EPERM, "Operation not permitted")

        alive = self.write(new_body_file(NAME) + f".{DEAD_PID}.tmp")
        self.patch(os, "kill", refuse)
        self.sweep()
        self.assertEqual(self.files(), [alive])

    def test_old_layout(self):
        """The older layout's .body, .meta and .tmp files in the cache directory's shards are deleted, and their emptied shards."""
        hexname = NAME.hex()
        for suffix in (".body", ".meta", ".body.tmp", ".meta.tmp"):
            self.write(f"{hexname[:2]}/{hexname}{suffix}")
        self.write("00/" + "0" * 64 + ".body")
        self.sweep()
        self.assertEqual(self.files(), [])
        self.assertEqual(self.directories(), [])

    def test_unrelated_left(self):
        """Files and directories not named as the store names them are left alone, shards holding them too."""
        unrelated = [
            self.write("README"),
            self.write("index.sqlite"),
            self.write("ab/notes.txt"),
            self.write("zz/x.body"),
            self.write("abc/x.body"),
            self.write(f"{BODIES}/ab/notes.txt"),
            self.write(f"{BODIES}/ab/{NAME.hex()}"),
            self.write(f"{BODIES}/ab/{NAME.hex()}-0123456789"),
            self.write(f"{BODIES}/ab/{NAME.hex()}-01234567.tmp"),
            self.write(f"{BODIES}/ab/{NAME.hex()}-01234567.x.tmp"),
            self.write(f"{BODIES}/AB/{NAME.hex()}-01234567"),
            self.write(f"{BODIES}/notes.txt"),
        ]
        self.root.child("cd").makedirs()
        self.sweep()
        self.assertEqual(self.files(), sorted(unrelated))
        # An empty shard of the old layout is removed; bodies/ and the rest stay.
        self.assertNotIn("cd", self.directories())
        self.assertIn("ab", self.directories())
        self.assertIn(BODIES, self.directories())

    def test_file_as_shard(self):
        """A file where a shard directory would be is logged and left, and the rest is swept."""
        self.write(f"{BODIES}/00")
        self.write("01")
        self.stored()
        self.sweep()
        self.assertEqual(self.files(), ["01", f"{BODIES}/00"])
        self.assertEqual(sorted(error["path"] for error in self.errors()),
                         [os.path.join(self.root.path, name) for name in ("01", f"{BODIES}/00")])

    def test_missing_directory(self):
        """A cache directory that does not exist is an empty sweep, nothing logged."""
        self.root.remove()
        self.assertEqual(self.sweep(), 0)
        self.assertEqual(self.events, [])

    def test_vanished_file(self):
        """A body file deleted by another process while the sweep runs is passed over."""
        path = self.stored()
        real = os.stat

        def vanished(p, *args, **kwargs):
            if p.endswith(path):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            return real(p, *args, **kwargs)

        self.patch(os, "stat", vanished)
        self.sweep()
        self.assertEqual(self.files(), [path])
        self.assertEqual(self.asked, [])

    def test_batches(self):
        """The sweep yields once per SWEEP_BATCH files looked at, deleting as it goes."""
        count = 2 * SWEEP_BATCH + 10
        for i in range(count):
            self.stored(name=hashlib.sha256(b"%d" % i).digest())
        steps = sweep(self.root.path, self.is_named, self.writing, float("inf"), self.log)
        next(steps)
        # The step yields as its SWEEP_BATCH-th file is reached, before looking at it.
        self.assertEqual(len(self.files()), count - (SWEEP_BATCH - 1))
        next(steps)
        self.assertEqual(len(self.files()), count - (2 * SWEEP_BATCH - 1))
        self.assertEqual(list(steps), [])
        self.assertEqual(self.files(), [])

    def test_batches_across_shards(self):
        """The batches count the files of every shard, the old layout's included."""
        for i in range(SWEEP_BATCH):
            hexname = hashlib.sha256(b"%d" % i).hexdigest()
            self.write(f"{hexname[:2]}/{hexname}.meta")
        self.stored()
        self.assertEqual(self.sweep(), 1)
        self.assertEqual(self.files(), [])


class PatternTests(SynchronousTestCase):
    """The sweep's patterns recognise exactly the names the store gives."""

    def test_new_body_file_is_stored(self):
        """A new body file's name is one the sweep takes for a stored body."""
        filename = new_body_file(NAME).rsplit("/", 1)[1]
        self.assertIsNotNone(body_files._STORED.fullmatch(filename))
        self.assertIsNone(body_files._WRITING.fullmatch(filename))

    def test_temporary_is_writing(self):
        """A temporary file's name is one the sweep takes for a file being written, by this process."""
        filename = temporary(new_body_file(NAME)).rsplit("/", 1)[1]
        match = body_files._WRITING.fullmatch(filename)
        self.assertEqual(int(match.group(1)), os.getpid())
        self.assertIsNone(body_files._STORED.fullmatch(filename))

    def test_shard(self):
        """Shards are two lower-case hex digits."""
        self.assertEqual([bool(body_files._SHARD.fullmatch(s)) for s in ("ab", "0f", "AB", "a", "abc", "g0")],
                         [True, True, False, False, False, False])
        self.assertIsNotNone(re.fullmatch("[0-9a-f]{2}", new_body_file(NAME).split("/")[1]))
