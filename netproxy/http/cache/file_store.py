# -*- test-case-name: tests.http.cache.test_file_store,tests.http.cache.test_interfaces -*-
"""
The proxy's cache on disk, in a L{FilePath} tree that survives restarts,
with the records and small bodies of the most recently used entries held in
memory.  The files, how they change safely and the scan of the directory at
start-up are L{netproxy.http.cache.file_layout}'s.

This module is longer than the 400 lines the package aims for, by its
writer: L{_FileWriter} reaches into the store's index, its registry of
temporary files and its commit, and moving it to a module of its own would
turn those into a public seam with one caller.
"""

import io
import os
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.filepath import FilePath
from zope.interface import implementer

from netproxy.escaping import Logger
from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    DamagedEntry,
    Entry,
    Held,
    decode_record,
    encode_record,
    same_body,
)
from netproxy.errors import EntryNotRemoved
from netproxy.http.cache.file_layout import (
    BODY,
    META,
    TEMP,
    entry_file,
    file_name,
    remove,
    retire_record,
    scan,
    write_record,
)
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.producers import Scheduler, next_turn, one_step, stream_body
from netproxy.http.cache.writer import BodyWriter

#: Seconds between two updates of an entry's modification time, which
#: records its last use across restarts: a hit must not cost a syscall.
TOUCH_INTERVAL = 60.0
#: What an entry held in memory is accounted, beyond its body: its record
#: decoded into Python objects takes several times the record's JSON (about
#: 2,300 bytes for a 400-byte record), plus the index's own objects.
_RECORD_FACTOR = 4
_OVERHEAD = 800


class _Slot:
    """An entry's place in the LRU order: its size, and when its mtime was last set."""

    __slots__ = ("size", "touched")

    def __init__(self, size: int, touched: float) -> None:
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

    :param path: the cache directory; created if missing.
    :param max_size: the most bytes kept on disk (bodies plus records).
    :param reactor: provides C{seconds} (the time of each use) and
        C{callLater} (the default C{scheduler}).
    :param memory_size: the most bytes of records and bodies held in memory.
    :param scheduler: the L{Cooperator} scheduler bodies are streamed and the
        directory scanned with; by default L{next_turn}C{(reactor)}.
    """

    log = Logger()

    def __init__(
        self,
        path: FilePath[Any],
        max_size: int,
        reactor: IReactorTime,
        memory_size: int = 32 * 1024 * 1024,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.path: FilePath[str] = path.asTextMode()
        self.path.makedirs(ignoreExistingDirectory=True)
        self.max_size = max_size
        self.memory_size = memory_size
        self._reactor = reactor
        self._scheduler = next_turn(reactor) if scheduler is None else scheduler
        self.evictions = 0
        # name -> _Slot, least recently used first.  Complete once loaded.
        self._index: OrderedDict[str, _Slot] = OrderedDict()
        self._size = 0
        # name -> Held, least recently used first, within memory_size.
        self._hot: OrderedDict[str, Held] = OrderedDict()
        self._hot_size = 0
        # name -> (mtime, size): found by load, ordered in when it completes.
        self._scanned: dict[str, tuple[float, int]] = {}
        self._loaded = False
        # Temporary files being written, which load must leave alone.
        self._writing: set[str] = set()
        self._shards: set[str] = set()
        # Entries whose record could be neither deleted nor emptied (see
        # remove): never served by this store, though still on disk.  No
        # more than there were entries.
        self._dead: set[str] = set()

    @property
    def size(self) -> int:
        """
        The bytes the entries take on disk, as accounted: bodies plus records.
        """
        return self._size

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: bytes) -> Entry | None:
        name = file_name(key)
        if name in self._dead:
            return None
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

    def held_body(self, entry: Entry) -> bytes | None:
        name = file_name(entry.key)
        hot = self._hot.get(name)
        if hot is None or hot.body is None or not same_body(hot.entry, entry):
            return None
        self._use(name)
        return hot.body

    def read(self, entry: Entry, consumer: IConsumer) -> "Deferred[None]":
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

    def writer(self, key: bytes, meta: dict[str, Any]) -> IWriter:
        return _FileWriter(self, key, meta)

    def update(self, key: bytes, meta: dict[str, Any]) -> Entry | None:
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

    def remove(self, key: bytes) -> bool:
        """
        Remove an entry for good (L{retire_record}): gone for every process
        reading the directory and after a restart, or L{EntryNotRemoved}.

        :raises EntryNotRemoved: when its record could be neither deleted
            nor emptied; this store serves it no more, but it is still on
            disk for others, and after a restart.
        """
        name = file_name(key)
        known = name in self._index or name in self._scanned or name in self._dead
        self._forget(name)
        record = self._file(name, META)
        try:
            found = retire_record(record, self.log)
        except OSError as e:
            self._dead.add(name)
            reason = e.strerror or str(e)
            raise EntryNotRemoved(f"its record {record.path} could be neither deleted nor emptied: {reason}") from None
        self._dead.discard(name)
        remove(self._file(name, BODY), self.log)
        return found or known

    def load(self) -> "Deferred[None]":
        """
        Scan the cache directory, a batch of files per reactor turn: account
        for each entry, ordered by last use (its record's mtime), delete
        temporary files left by a crash and bodies without a record, then
        evict down to C{max_size}.  Call it once, at start-up.

        :returns: a L{Deferred} that fires when the scan is complete.
        """
        cooperator = Cooperator(terminationPredicateFactory=one_step, scheduler=self._scheduler)
        steps = scan(self.path, self._writing, self._index, self._scanned, self._delete, self.log)
        return cooperator.coiterate(steps).addCallback(self._merge)

    def _merge(self, ignored: object) -> None:
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

    def _file(self, name: str, suffix: str) -> FilePath[str]:
        return entry_file(self.path, name, suffix)

    def _shard(self, name: str) -> None:
        if name[:2] not in self._shards:
            self.path.child(name[:2]).makedirs(ignoreExistingDirectory=True)
            self._shards.add(name[:2])

    def _read_record(self, name: str, key: bytes) -> tuple[Entry, int] | None:
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
        if not data:
            # A tombstone: the entry was removed (retire_record).
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

    def _write_record(self, name: str, record: bytes) -> None:
        write_record(self._file(name, META), record, self._reactor.seconds(), self.log)

    def _commit(self, temp: FilePath[str], entry: Entry, small: bytes | None) -> Entry | None:
        """
        Put a written body and its record in place: see
        L{netproxy.http.cache.file_layout}.

        :returns: the stored L{Entry}, or L{None}.
        """
        name = file_name(entry.key)
        try:
            entry, record = _stored(entry)
        except (TypeError, ValueError):
            remove(temp, self.log)
            raise
        size = entry.length + len(record)
        if size > self.max_size:
            remove(temp, self.log)
            return None
        try:
            temp.moveTo(self._file(name, BODY))
        except OSError as e:
            self.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            remove(temp, self.log)
            return None
        try:
            self._write_record(name, record)
        except OSError as e:
            self.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            # The new body may sit under the old record: drop both.
            self._delete(name)
            return None
        self._scanned.pop(name, None)
        self._dead.discard(name)
        self._add(name, _Slot(size, self._reactor.seconds()))
        self._remember(name, entry, small, len(record))
        self._evict()
        return entry

    def _add(self, name: str, slot: _Slot) -> None:
        old = self._index.pop(name, None)
        if old is not None:
            self._size -= old.size
        self._index[name] = slot
        self._size += slot.size

    def _use(self, name: str) -> None:
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

    def _remember(self, name: str, entry: Entry, body: bytes | None, record_size: int) -> None:
        self._hold(name, entry, body, _RECORD_FACTOR * record_size + _OVERHEAD + len(body or b""))

    def _hold(self, name: str, entry: Entry, body: bytes | None, cost: int) -> None:
        old = self._hot.pop(name, None)
        if old is not None:
            self._hot_size -= old.size
        if cost > self.memory_size:
            return
        self._hot[name] = Held(entry, body, cost)
        self._hot_size += cost
        while self._hot_size > self.memory_size:
            self._hot_size -= self._hot.popitem(last=False)[1].size

    def _keep(self, name: str, entry: Entry, body: bytes) -> None:
        hot = self._hot.get(name)
        if hot is not None and hot.body is None and same_body(hot.entry, entry):
            self._hold(name, hot.entry, body, hot.size + len(body))

    def _evict(self) -> None:
        while self._size > self.max_size and self._index:
            self._delete(next(iter(self._index)))
            self.evictions += 1

    def _forget(self, name: str) -> None:
        slot = self._index.pop(name, None)
        if slot is not None:
            self._size -= slot.size
        hot = self._hot.pop(name, None)
        if hot is not None:
            self._hot_size -= hot.size
        self._scanned.pop(name, None)

    def _delete(self, name: str) -> bool:
        """
        Forget an entry and delete its files, record first: without its
        record an entry is gone, even if deleting the body fails.

        :returns: whether the entry had a record on disk.
        """
        self._forget(name)
        found = remove(self._file(name, META), self.log)
        remove(self._file(name, BODY), self.log)
        return found

    def _discard(self, entry: Entry, error: DamagedEntry) -> None:
        name = file_name(entry.key)
        hot = self._hot.get(name)
        current = hot.entry if hot is not None else self._peek(name)
        if current is not None and not same_body(current, entry):
            return  # replaced since: the damage was the old version's
        self.log.warn("discarding damaged cache entry {name}: {error}", name=name, error=str(error))
        self._delete(name)

    def _peek(self, name: str) -> Entry | None:
        try:
            return decode_record(self._file(name, META).getContent())
        except (OSError, ValueError):
            return None


def _stored(entry: Entry) -> tuple[Entry, bytes]:
    """
    :returns: the store's own copy of C{entry}, and its record.
    """
    record = encode_record(entry)
    return decode_record(record), record


@implementer(IWriter)
class _FileWriter(BodyWriter):
    """
    Writes a body to a temporary file as it arrives, keeping a copy in memory
    only while it fits in one chunk (for the memory cache).
    """

    def __init__(self, store: FileStore, key: bytes, meta: dict[str, Any]) -> None:
        super().__init__(key, meta, store.max_size, store._scheduler)
        self._store = store
        self._small: list[bytes] | None = []
        self._name = name = file_name(key)
        self._temp = temp = store._file(name, BODY).temporarySibling(TEMP)
        self._file: IO[bytes] | None
        try:
            store._shard(name)
            self._file = temp.open("w")
        except OSError as e:
            store.log.error("could not store cache entry {name}: {error}", name=name, error=str(e))
            self._file = None
            self._open = False
        else:
            store._writing.add(temp.path)

    def _keep(self, data: bytes) -> None:
        if self._small is not None:
            if self._length <= CHUNK_SIZE:
                self._small.append(data)
            else:
                self._small = None
        assert self._file is not None, "kept only while open"
        try:
            self._file.write(data)
        except OSError as e:
            self._store.log.error("could not store cache entry {name}: {error}", name=self._name, error=str(e))
            self.abort()

    def _commit(self, entry: Entry) -> Entry | None:
        file, self._file = self._file, None
        assert file is not None, "committed only while open"
        self._store._writing.discard(self._temp.path)
        try:
            file.close()
        except OSError as e:
            self._store.log.error("could not store cache entry {name}: {error}", name=self._name, error=str(e))
            remove(self._temp, self._store.log)
            return None
        small = b"".join(self._small) if self._small is not None else None
        stored = self._store._commit(self._temp, entry, small)
        if stored is not None:
            self._temp = self._store._file(self._name, BODY)
        return stored

    def reader(self) -> tuple[Callable[[int, int], bytes], Callable[[], object]]:
        # A descriptor of its own, still valid once the file is renamed into
        # place (or evicted); written data is flushed before each read.
        source = open(self._temp.path, "rb")  # noqa: SIM115 - closed by release

        def read(offset: int, size: int) -> bytes:
            if self._file is not None:
                self._file.flush()
            return os.pread(source.fileno(), size, offset)

        return read, source.close

    def _discard(self) -> None:
        file, self._file = self._file, None
        assert file is not None, "discarded only while open"
        self._store._writing.discard(self._temp.path)
        try:
            file.close()
        except OSError:
            pass
        remove(self._temp, self._store.log)
