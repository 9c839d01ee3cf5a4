# -*- test-case-name: tests.http.cache.test_sqlite_store,tests.http.cache.test_interfaces -*-
"""
The proxy's cache on disk: an index in SQLite
(L{netproxy.http.cache.sqlite_index}) whose rows hold each entry's record
and, up to L{SMALL_BODY} bytes, its body; larger bodies in files of their
own (L{netproxy.http.cache.body_files}).  The records and small bodies of
the most recently used entries are also held in memory, so that a hit on
one of them reads nothing.

Several processes may serve from one cache directory at once: what one
stores, replaces or removes is in the index they share.  A store made with
C{shared=True} checks, at each hit on an entry it holds in memory, that the
index still names the same version, so that nothing removed by another
process is served from its memory.
"""

import io
import os
import sqlite3
from functools import partial
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.filepath import FilePath
from zope.interface import implementer

from netproxy.errors import EntryNotRemoved
from netproxy.escaping import Logger
from netproxy.http.cache import body_files
from netproxy.http.cache.entry import (
    DamagedEntry,
    Entry,
    check_body,
    decode_record,
    encode_record,
    same_body,
)
from netproxy.http.cache.fetch_leases import FetchLeases
from netproxy.http.cache.held import Held, HeldEntries
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.producers import Scheduler, next_turn, one_step, stream_body
from netproxy.http.cache.spill_writer import SpillWriter, entry_name
from netproxy.http.cache.sqlite_index import Index, Row
from netproxy.http.cache.sqlite_schema import open_index
from netproxy.http.cache.use_order import UseOrder

#: The index's file in the cache directory.
INDEX = "index.sqlite"
#: Eviction frees this fraction of max_size beyond what it must, so that a
#: cache kept full by a stream of misses evicts a batch every few hundred
#: entries stored rather than one row at every store.
EVICTION_SLACK = 256


@implementer(IStore)
class SQLiteStore:
    """
    Cache entries on disk, indexed in SQLite, with the most recently used
    held in memory.

    Call L{load} at start-up, to tidy what a crash left behind, and
    L{flush} at shutdown.  Every entry is servable from the start.

    :param path: the cache directory; created if missing.
    :param max_size: the most bytes kept (bodies plus records).
    :param reactor: provides C{seconds} (the time of each use) and
        C{callLater} (the commit at the end of each turn, and the default
        C{scheduler}).
    :param memory_size: the most bytes of records and bodies held in
        memory (L{netproxy.http.cache.held}).
    :param scheduler: what bodies are streamed and the directory swept
        with; by default L{next_turn}C{(reactor)}.
    :param shared: whether other processes use the directory at the same
        time (see the module's docstring).
    :ivar leases: when shared, who fetches which miss (L{FetchLeases}).
    :raises sqlite3.Error: when the index can be neither opened nor created.
    """

    log = Logger()

    def __init__(
        self,
        path: FilePath[Any],
        max_size: int,
        reactor: IReactorTime,
        memory_size: int = 32 * 1024 * 1024,
        scheduler: Scheduler | None = None,
        shared: bool = False,
    ) -> None:
        self.path: FilePath[str] = path.asTextMode()
        self.path.makedirs(ignoreExistingDirectory=True)
        self.max_size = max_size
        self.shared = shared
        self.evictions = 0
        self._root = self.path.path
        self._reactor = reactor
        self._scheduler = next_turn(reactor) if scheduler is None else scheduler
        self._index = Index(open_index(os.path.join(self._root, INDEX), self.log), reactor, self._not_saved)
        self._uses = UseOrder(reactor, self._index.oldest)
        self.leases = FetchLeases(self._index) if shared else None
        self._hot = HeldEntries(memory_size)
        # Temporary files being written, which the sweep must leave alone.
        self.writing: set[str] = set()
        # Entries that could not be removed for good (see remove): never
        # served by this store, though still in the index.
        self._dead: set[bytes] = set()

    @property
    def size(self) -> int:
        """The bytes the entries take, as accounted: bodies plus records."""
        return self._index.totals()[0]

    def __len__(self) -> int:
        return self._index.totals()[1]

    def get(self, key: bytes) -> Entry | None:
        held = self._lookup(key)
        if held is None:
            return None
        self._use(held)
        return held.entry

    def held_body(self, entry: Entry) -> bytes | None:
        held = self._hot.get(entry_name(entry.key))
        if held is None or held.body is None or not same_body(held.entry, entry):
            return None
        self._use(held)
        return held.body

    def read(self, entry: Entry, consumer: IConsumer, window: tuple[int, int] | None = None) -> "Deferred[None]":
        name = entry_name(entry.key)
        held = self._hot.get(name)
        if held is not None and held.body is not None and same_body(held.entry, entry):
            self._use(held)
            body = held.body
            return stream_body(entry, lambda: io.BytesIO(body), consumer, self._scheduler, self._discard, True,
                               window=window)
        if held is not None and same_body(held.entry, entry):
            self._use(held)
        return stream_body(entry, partial(self._open_body, name, entry), consumer, self._scheduler, self._discard,
                           keep=partial(self._keep, name, entry), window=window)

    def writer(self, key: bytes, meta: dict[str, Any]) -> IWriter:
        return SpillWriter(key, meta, self.max_size, self._scheduler, self._root, self.writing, self.log, self._put)

    def update(self, key: bytes, meta: dict[str, Any]) -> Entry | None:
        held = self._lookup(key)
        if held is None:
            return None
        entry, record = _stored(Entry(key, meta, held.entry.length, held.entry.checksum))
        used = self._uses.stamp()
        try:
            id = self._index.replace_record(held.id, used, entry.length + len(record), record)
        except sqlite3.Error as e:
            self.log.error("could not update cache entry {name}: {error}", name=entry_name(key).hex(), error=str(e))
            return None
        if id is None:
            return None
        self._hot.hold(entry_name(key), Held(entry, record, held.body, id, used))
        self._evict()
        return entry

    def remove(self, key: bytes) -> bool:
        """
        Remove an entry for good: committed at once, so that it is gone for
        every process sharing the directory, and after a restart.

        :raises EntryNotRemoved: when the index could not be changed; this
            store serves the entry no more, but it is still there for
            others, and after a restart.
        """
        name = entry_name(key)
        self._hot.forget(name)
        try:
            gone = self._index.remove(name)
            self._index.commit()
        except sqlite3.Error as e:
            self._dead.add(name)
            raise EntryNotRemoved(f"the cache index could not be changed: {e}") from None
        self._dead.discard(name)
        if gone is not None:
            self._delete_unnamed(gone.file)
        return gone is not None

    def load(self) -> "Deferred[None]":
        """
        Tidy the cache directory in the background, a batch of files per
        reactor turn: delete what a crash or the layout of an older version
        left (see L{body_files.sweep}).  Entries are served meanwhile.

        :returns: a L{Deferred} that fires when it is done.
        """
        cooperator = Cooperator(terminationPredicateFactory=one_step, scheduler=self._scheduler)
        # Only a process sharing the directory may be about to name a new file.
        not_after = self._reactor.seconds() - body_files.SWEEP_AGE if self.shared else float("inf")
        steps = body_files.sweep(self._root, self._named, self.writing, not_after, self.log)
        return cooperator.coiterate(steps).addCallback(self._loaded)

    def flush(self) -> None:
        """Commit what the current turn changed, without waiting for its end."""
        try:
            self._index.commit()
        except sqlite3.Error as e:
            self.log.error("could not save the cache index: {error}", error=str(e))

    def close(self) -> None:
        """
        Commit what the current turn changed and close the index: the store
        is not usable afterwards.
        """
        self._index.close()

    def _not_saved(self, error: sqlite3.Error) -> None:
        # What memory holds may be of the turn rolled back.
        self._hot.clear()
        self.log.error("could not save the cache index: {error}", error=str(error))

    def _loaded(self, ignored: object) -> None:
        size, count = self._index.totals()
        self.log.info("cache {path} loaded: {count} entries, {size} bytes", path=self._root, count=count, size=size)

    def _named(self, name: bytes, file: str) -> bool:
        return self._index.referenced(name, file)

    def _lookup(self, key: bytes) -> Held | None:
        """
        :returns: what is known of C{key}'s current entry, held in memory
            from now on if it fits, or L{None}.
        """
        name = entry_name(key)
        held = self._hot.get(name)
        if held is not None:
            if not self.shared or self._current(name) == held.id:
                self._hot.used(name)
                return held
            self._hot.forget(name)
        if name in self._dead:
            return None
        try:
            row = self._index.find(name)
        except sqlite3.Error as e:
            self.log.error("could not read the cache index: {error}", error=str(e))
            return None
        if row is None:
            return None
        held = self._decode(name, key, row)
        if held is not None:
            self._hot.hold(name, held)
        return held

    def _current(self, name: bytes) -> int | None:
        try:
            return self._index.current(name)
        except sqlite3.Error:
            return None

    def _decode(self, name: bytes, key: bytes, row: Row) -> Held | None:
        try:
            entry = decode_record(row.record)
            if entry.key != key:
                raise ValueError("it is for another key")
            if row.body is not None:
                check_body(entry, row.body)
            elif row.file is None:
                raise ValueError("it has no body")
            elif not body_files.is_body_file(row.file, name):
                raise ValueError("it names a file that is not its body's")
        except (ValueError, DamagedEntry) as e:
            self.log.warn("discarding cache entry {name}: {error}", name=name.hex(), error=str(e))
            self._drop(name, row.id)
            return None
        return Held(entry, row.record, row.body, row.id, row.used)

    def _open_body(self, name: bytes, entry: Entry) -> IO[bytes]:
        try:
            row = None if name in self._dead else self._index.find(name)
            if row is None or not same_body(decode_record(row.record), entry):
                raise FileNotFoundError(f"no entry for {name.hex()} with this body")
        except (sqlite3.Error, ValueError) as e:
            raise OSError(f"the cache index cannot be read ({e})") from None
        if row.body is not None:
            return io.BytesIO(row.body)
        if row.file is None or not body_files.is_body_file(row.file, name):
            raise FileNotFoundError(f"the entry {name.hex()} names no body file of its own")
        return open(os.path.join(self._root, row.file), "rb")  # noqa: SIM115 - closed by the producer

    def _keep(self, name: bytes, entry: Entry, body: bytes) -> None:
        held = self._hot.get(name)
        if held is not None and held.body is None and same_body(held.entry, entry):
            # Out while its cost changes: the tier subtracts what it costs now.
            self._hot.forget(name)
            held.keep(body)
            self._hot.hold(name, held)

    def _use(self, held: Held) -> None:
        if not self._uses.worth_recording(held.used):
            return
        held.used = self._uses.stamp()
        try:
            self._index.touch(held.id, held.used)
        except sqlite3.Error as e:
            self.log.error("could not record a use in the cache index: {error}", error=str(e))

    def _put(self, entry: Entry, body: bytes | None, file: str | None) -> Entry | None:
        """
        Index a written body, kept in C{body} or in the file C{file}.

        :returns: the stored L{Entry}, or L{None}.
        """
        name = entry_name(entry.key)
        try:
            entry, record = _stored(entry)
        except (TypeError, ValueError):
            self._delete_unnamed(file)
            raise
        size = entry.length + len(record)
        if size > self.max_size:
            self._delete_unnamed(file)
            return None
        used = self._uses.stamp()
        try:
            id, replaced = self._index.put(name, used, size, record, body, file)
        except sqlite3.Error as e:
            self.log.error("could not store cache entry {name}: {error}", name=name.hex(), error=str(e))
            self._delete_unnamed(file)
            return None
        if name in self._dead:
            self._index.after_commit(partial(self._dead.discard, name))
        self._delete_file(replaced)
        self._hot.hold(name, Held(entry, record, body, id, used))
        self._evict()
        return entry

    def _evict(self) -> None:
        try:
            excess = self._index.totals()[0] - self.max_size
            evicted = self._index.evict(excess + self.max_size // EVICTION_SLACK) if excess > 0 else []
        except sqlite3.Error as e:
            self.log.error("could not evict from the cache: {error}", error=str(e))
            return
        for gone in evicted:
            self._hot.forget(gone.name)
            self._delete_file(gone.file)
            self.evictions += 1

    def _drop(self, name: bytes, id: int) -> None:
        self._hot.forget(name)
        try:
            gone = self._index.remove(name, id)
        except sqlite3.Error as e:
            self.log.error("could not discard cache entry {name}: {error}", name=name.hex(), error=str(e))
            return
        if gone is not None and gone.file is not None and body_files.is_body_file(gone.file, name):
            self._delete_file(gone.file)

    def _delete_file(self, file: str | None) -> None:
        # Only once no committed row names it: a crash before the commit
        # leaves the old row with its file.  Readers hold their file open.
        if file is not None:
            self._index.after_commit(partial(body_files.delete, self._root, file, self.log))

    def _delete_unnamed(self, file: str | None) -> None:
        # A file no committed row names (any more): deleted at once, without
        # a write to the index, which may be what failed.
        if file is not None:
            body_files.delete(self._root, file, self.log)

    def _discard(self, entry: Entry, error: DamagedEntry) -> None:
        name = entry_name(entry.key)
        try:
            row = self._index.find(name)
        except sqlite3.Error:
            return
        if row is None:
            return
        try:
            current = decode_record(row.record)
        except ValueError:
            current = None
        if current is not None and not same_body(current, entry):
            return  # replaced since: the damage was the old version's
        self.log.warn("discarding damaged cache entry {name}: {error}", name=name.hex(), error=str(error))
        self._drop(name, row.id)


_SCALARS = (str, int, float, bool, type(None))


def _stored(entry: Entry) -> tuple[Entry, bytes]:
    """
    :returns: the store's own copy of C{entry}, and its record.
    """
    record = encode_record(entry)
    if all(isinstance(value, _SCALARS) for value in entry.meta.values()):
        # Flat, as the cache's metadata is: a shallow copy is a copy, and
        # costs far less than decoding the record just written.
        return Entry(entry.key, dict(entry.meta), entry.length, entry.checksum), record
    return decode_record(record), record
