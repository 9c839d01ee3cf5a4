"""
The proxy's cache on disk, in a L{FilePath} tree that survives restarts.

Each entry is two files named after C{sha256(key)} (never after the URL),
in one of 256 directories named after the name's first two hex digits, as
Squid shards its own::

    <cache dir>/3f/3fa8...c1.body            the body
    <cache dir>/3f/3fa8...c1.meta            the record: key, meta, length, checksum
    <cache dir>/3f/<random>3fa8...c1.body.tmp  a body being written
    <cache dir>/3f/<random>3fa8...c1.meta.tmp  a record being written

An entry is stored by writing its body to a temporary file, renaming it into
place, then writing its record to a temporary file and renaming that into
place last, so that a crash at any moment leaves the old entry, the new one
or none visible.  A crash between the two renames pairs the old record with
the new body: the length and checksum then disagree, and L{FileStore.read}
discards the entry instead of serving it.  Nothing is fsynced: C{kill -9}
loses nothing the kernel accepted, and what a power cut garbles is caught the
same way.  One process owns a cache directory.
"""

import hashlib
import io
import os
import re
from collections import OrderedDict
from functools import lru_cache, partial

from twisted.internet.task import Cooperator
from twisted.logger import Logger
from zope.interface import implementer

from netproxy.http.cache.producers import stream_body
from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    Entry,
    Held,
    decode_record,
    encode_record,
    same_body,
)
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.producers import next_turn, one_step
from netproxy.http.cache.writer import BodyWriter

BODY, META, TEMP = ".body", ".meta", ".tmp"
#: Seconds between two updates of an entry's modification time, which
#: records its last use across restarts: a hit must not cost a syscall.
TOUCH_INTERVAL = 60.0
#: Directory entries examined per reactor turn by L{FileStore.load}.
LOAD_BATCH = 100
#: What an entry held in memory is accounted, beyond its body: its record
#: decoded into Python objects takes several times the record's JSON (about
#: 2,300 bytes for a 400-byte record), plus the index's own objects.
_RECORD_FACTOR = 4
_OVERHEAD = 800
_SHARD = re.compile("[0-9a-f]{2}")
_NAME = re.compile("[0-9a-f]{64}")


@lru_cache(maxsize=4096)
def file_name(key: bytes) -> str:
    """
    :returns: the name of C{key}'s files, less their suffix.  Remembered
        for recent keys, as a hit asks for its name more than once.
    """
    return hashlib.sha256(key).hexdigest()


class _Slot:
    """An entry's place in the LRU order: its size, and when its mtime was last set."""

    __slots__ = ("size", "touched")

    def __init__(self, size, touched):
        self.size = size
        self.touched = touched


@implementer(IStore)
class FileStore:
    """
    Cache entries on disk, with the records and small bodies of the most
    recently used ones in memory, so that a hit on a small entry does no file
    I/O at all.

    Call L{load} at start-up: it rebuilds the LRU order and size from the
    directory over many reactor turns.  Until it completes, L{get} finds an
    entry not yet scanned by its file name, and L{size}, C{len} and eviction
    cover only the entries used or stored since start.

    :param path: the cache directory (a L{FilePath}); created if missing.
    :param max_size: the most bytes kept on disk (bodies plus records).
    :param reactor: provides C{seconds} (the time of each use) and
        C{callLater} (the default C{scheduler}).
    :param memory_size: the most bytes of records and bodies held in memory.
    :param scheduler: the L{Cooperator} scheduler bodies are streamed and the
        directory scanned with; by default L{next_turn}C{(reactor)}.
    """

    log = Logger()

    def __init__(self, path, max_size, reactor, memory_size=32 * 1024 * 1024, scheduler=None):
        self.path = path.asTextMode()
        self.path.makedirs(ignoreExistingDirectory=True)
        self.max_size = max_size
        self.memory_size = memory_size
        self._reactor = reactor
        self._scheduler = next_turn(reactor) if scheduler is None else scheduler
        self.evictions = 0
        # name -> _Slot, least recently used first.  Complete once loaded.
        self._index = OrderedDict()
        self._size = 0
        # name -> Held, least recently used first, within memory_size.
        self._hot = OrderedDict()
        self._hot_size = 0
        # name -> (mtime, size): found by load, ordered in when it completes.
        self._scanned = {}
        self._loaded = False
        # Temporary files being written, which load must leave alone.
        self._writing = set()
        self._shards = set()

    @property
    def size(self):
        return self._size

    def __len__(self):
        return len(self._index)

    def get(self, key):
        name = file_name(key)
        hot = self._hot.get(name)
        if hot is not None:
            self._hot.move_to_end(name)
            self._use(name)
            return hot.entry
        if name not in self._index and self._loaded:
            return None
        found = self._read_record(name, key)
        if found is None:
            return None
        entry, record_size = found
        if name not in self._index:
            # Not scanned yet: touched at once, as its mtime is unknown.
            self._scanned.pop(name, None)
            self._add(name, _Slot(entry.length + record_size, float("-inf")))
        self._remember(name, entry, None, record_size)
        self._use(name)
        return entry

    def held_body(self, entry):
        name = file_name(entry.key)
        hot = self._hot.get(name)
        if hot is None or hot.body is None or not same_body(hot.entry, entry):
            return None
        self._use(name)
        return hot.body

    def read(self, entry, consumer):
        name = file_name(entry.key)
        self._use(name)
        hot = self._hot.get(name)
        if hot is None or not same_body(hot.entry, entry):
            return stream_body(entry, self._file(name, BODY).open, consumer, self._scheduler, self._discard)
        if hot.body is not None:
            body = hot.body
            return stream_body(
                entry, lambda: io.BytesIO(body), consumer, self._scheduler, self._discard, verified=True
            )
        keep = partial(self._keep, name, entry)
        return stream_body(entry, self._file(name, BODY).open, consumer, self._scheduler, self._discard, keep=keep)

    def writer(self, key, meta):
        return _FileWriter(self, key, meta)

    def update(self, key, meta):
        entry = self.get(key)
        if entry is None:
            return None
        name = file_name(key)
        body = self._hot[name].body if name in self._hot else None
        entry, record = _stored(Entry(key, meta, entry.length, entry.checksum))
        try:
            self._write_record(name, record)
        except OSError as e:
            self.log.error("could not update cache record {name}: {error}", name=name, error=str(e))
            return None
        self._add(name, _Slot(entry.length + len(record), self._reactor.seconds()))
        self._remember(name, entry, body, len(record))
        self._evict()
        return entry if name in self._index else None

    def remove(self, key):
        name = file_name(key)
        known = name in self._index or name in self._scanned
        return self._delete(name) or known

    def load(self):
        """
        Scan the cache directory, a batch of files per reactor turn: account
        for each entry, ordered by last use (its record's mtime), delete
        temporary files left by a crash and bodies without a record, then
        evict down to C{max_size}.  Call it once, at start-up.

        :returns: a L{Deferred} that fires when the scan is complete.
        """
        cooperator = Cooperator(terminationPredicateFactory=one_step, scheduler=self._scheduler)
        return cooperator.coiterate(self._scan()).addCallback(self._merge)

    def _scan(self):
        try:
            shards = sorted(name for name in self.path.listdir() if _SHARD.fullmatch(name))
        except OSError as e:
            self.log.error("could not list cache directory {path}: {error}", path=self.path.path, error=str(e))
            return
        for shard in shards:
            directory = self.path.child(shard)
            try:
                filenames = directory.listdir()
            except OSError as e:
                self.log.error("could not list cache directory {path}: {error}", path=directory.path, error=str(e))
                continue
            records = {filename[: -len(META)] for filename in filenames if filename.endswith(META)}
            for start in range(0, len(filenames), LOAD_BATCH):
                for filename in filenames[start : start + LOAD_BATCH]:
                    self._scan_file(directory, filename, records)
                yield None

    def _scan_file(self, directory, filename, records):
        name, suffix = filename[:64], filename[64:]
        if filename.endswith(TEMP):
            if directory.child(filename).path not in self._writing:
                _remove(directory.child(filename))
        elif not _NAME.fullmatch(name) or name in self._index:
            pass
        elif suffix == META:
            record, body = directory.child(filename), directory.child(name + BODY)
            try:
                mtime, record_size = record.getModificationTime(), record.getsize()
            except OSError:
                return  # removed since the directory was listed
            try:
                body_size = body.getsize()
            except OSError:
                self._delete(name)
                return
            self._scanned[name] = (mtime, record_size + body_size)
        elif suffix == BODY and name not in records:
            # A record written since the listing would be in the index.
            _remove(directory.child(filename))

    def _merge(self, ignored):
        for mtime, name, size in sorted(((t, n, s) for n, (t, s) in self._scanned.items()), reverse=True):
            # Newest first, each put before the others: oldest ends first.
            self._add(name, _Slot(size, mtime))
            self._index.move_to_end(name, last=False)
        self._scanned = {}
        self._loaded = True
        self._evict()
        self.log.info(
            "cache {path} loaded: {count} entries, {size} bytes", path=self.path.path, count=len(self), size=self._size
        )

    def _file(self, name, suffix):
        return self.path.child(name[:2]).child(name + suffix)

    def _shard(self, name):
        if name[:2] not in self._shards:
            self.path.child(name[:2]).makedirs(ignoreExistingDirectory=True)
            self._shards.add(name[:2])

    def _read_record(self, name, key):
        """
        :returns: the entry recorded on disk for C{key} and its record's
            length, or L{None}, discarding the entry if the record is unreadable.
        """
        try:
            data = self._file(name, META).getContent()
        except FileNotFoundError:
            self._forget(name)
            return None
        except OSError as e:
            self.log.error("could not read cache record {name}: {error}", name=name, error=str(e))
            return None
        try:
            entry = decode_record(data)
            if entry.key != key:
                raise ValueError("it is for another key")
        except ValueError as e:
            self.log.warn("discarding cache entry {name}: unreadable record ({error})", name=name, error=str(e))
            self._delete(name)
            return None
        return entry, len(data)

    def _write_record(self, name, record):
        """
        Put C{record} in place for C{name} atomically, with the current time
        as its mtime (its last use, read back by L{load}).
        """
        path = self._file(name, META)
        temp = path.temporarySibling(TEMP)
        try:
            with temp.open("w") as f:
                f.write(record)
            now = self._reactor.seconds()
            os.utime(temp.path, (now, now))
            temp.moveTo(path)
        except OSError:
            _remove(temp)
            raise

    def _commit(self, temp, entry, small):
        """
        Put a written body and its record in place: see the module docstring.

        :returns: the stored L{Entry}, or L{None}.
        """
        name = file_name(entry.key)
        try:
            entry, record = _stored(entry)
        except (TypeError, ValueError):
            _remove(temp)
            raise
        size = entry.length + len(record)
        if size > self.max_size:
            _remove(temp)
            return None
        try:
            temp.moveTo(self._file(name, BODY))
        except OSError as e:
            self.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            _remove(temp)
            return None
        try:
            self._write_record(name, record)
        except OSError as e:
            self.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            # The new body may sit under the old record: drop both.
            self._delete(name)
            return None
        self._scanned.pop(name, None)
        self._add(name, _Slot(size, self._reactor.seconds()))
        self._remember(name, entry, small, len(record))
        self._evict()
        return entry

    def _add(self, name, slot):
        old = self._index.pop(name, None)
        if old is not None:
            self._size -= old.size
        self._index[name] = slot
        self._size += slot.size

    def _use(self, name):
        slot = self._index.get(name)
        if slot is None:
            return
        self._index.move_to_end(name)
        now = self._reactor.seconds()
        if now - slot.touched >= TOUCH_INTERVAL:
            slot.touched = now
            try:
                os.utime(self._file(name, META).path, (now, now))
            except OSError:
                pass  # gone: the next read finds out

    def _remember(self, name, entry, body, record_size):
        self._hold(name, entry, body, _RECORD_FACTOR * record_size + _OVERHEAD + len(body or b""))

    def _hold(self, name, entry, body, cost):
        old = self._hot.pop(name, None)
        if old is not None:
            self._hot_size -= old.size
        if cost > self.memory_size:
            return
        self._hot[name] = Held(entry, body, cost)
        self._hot_size += cost
        while self._hot_size > self.memory_size:
            self._hot_size -= self._hot.popitem(last=False)[1].size

    def _keep(self, name, entry, body):
        hot = self._hot.get(name)
        if hot is not None and hot.body is None and same_body(hot.entry, entry):
            self._hold(name, hot.entry, body, hot.size + len(body))

    def _evict(self):
        while self._size > self.max_size and self._index:
            self._delete(next(iter(self._index)))
            self.evictions += 1

    def _forget(self, name):
        slot = self._index.pop(name, None)
        if slot is not None:
            self._size -= slot.size
        hot = self._hot.pop(name, None)
        if hot is not None:
            self._hot_size -= hot.size
        self._scanned.pop(name, None)

    def _delete(self, name):
        """
        Forget an entry and delete its files, record first: without its
        record an entry is gone, even if deleting the body fails.

        :returns: whether the entry had a record on disk.
        """
        self._forget(name)
        found = _remove(self._file(name, META))
        _remove(self._file(name, BODY))
        return found

    def _discard(self, entry, error):
        name = file_name(entry.key)
        hot = self._hot.get(name)
        current = hot.entry if hot is not None else self._peek(name)
        if current is not None and not same_body(current, entry):
            return  # replaced since: the damage was the old version's
        self.log.warn("discarding damaged cache entry {name}: {error}", name=name, error=str(error))
        self._delete(name)

    def _peek(self, name):
        try:
            return decode_record(self._file(name, META).getContent())
        except (OSError, ValueError):
            return None


def _stored(entry):
    """
    :returns: the store's own copy of C{entry}, and its record.
    """
    record = encode_record(entry)
    return decode_record(record), record


def _remove(path):
    """
    :returns: whether C{path} existed.
    """
    try:
        path.remove()
    except FileNotFoundError:
        return False
    except OSError as e:
        FileStore.log.error("could not delete {path}: {error}", path=path.path, error=str(e))
    return True


@implementer(IWriter)
class _FileWriter(BodyWriter):
    """
    Writes a body to a temporary file as it arrives, keeping a copy in memory
    only while it fits in one chunk (for the memory cache).
    """

    def __init__(self, store, key, meta):
        super().__init__(store, key, meta)
        self._small = []
        self._name = name = file_name(key)
        self._temp = temp = store._file(name, BODY).temporarySibling(TEMP)
        try:
            store._shard(name)
            self._file = temp.open("w")
        except OSError as e:
            store.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            self._file = None
            self._open = False
        else:
            store._writing.add(temp.path)

    def _keep(self, data):
        if self._small is not None:
            if self._length <= CHUNK_SIZE:
                self._small.append(data)
            else:
                self._small = None
        try:
            self._file.write(data)
        except OSError as e:
            self._store.log.error("could not store cache entry {name}: {error}", name=self._name, error=str(e))
            self.abort()

    def _commit(self, entry):
        file, self._file = self._file, None
        self._store._writing.discard(self._temp.path)
        try:
            file.close()
        except OSError as e:
            self._store.log.error("could not store cache entry {name}: {error}", name=self._name, error=str(e))
            _remove(self._temp)
            return None
        small = b"".join(self._small) if self._small is not None else None
        stored = self._store._commit(self._temp, entry, small)
        if stored is not None:
            self._temp = self._store._file(self._name, BODY)
        return stored

    def reader(self):
        # A descriptor of its own, still valid once the file is renamed into
        # place (or evicted); written data is flushed before each read.
        source = open(self._temp.path, "rb")  # noqa: SIM115 - closed by release

        def read(offset, size):
            if self._file is not None:
                self._file.flush()
            return os.pread(source.fileno(), size, offset)

        return read, source.close

    def _discard(self):
        file, self._file = self._file, None
        self._store._writing.discard(self._temp.path)
        try:
            file.close()
        except OSError:
            pass
        _remove(self._temp)
