"""
A cache store held in memory, for tests (of the cache layer, and of the
store contract itself): it behaves as L{netproxy.http.cache.file_store.FileStore}
does, less the disk.
"""

import errno
import io
from collections import OrderedDict

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
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.writer import BodyWriter


@implementer(IStore)
class MemoryStore:
    """
    Entries and bodies in a dictionary, least recently used first.

    Metadata goes through the same JSON record as on disk, so a test meets
    the same errors (metadata that is not JSON) and the same sizes.

    :param max_size: the most bytes kept (bodies plus records).
    :param scheduler: the scheduler bodies are streamed with (see
        L{netproxy.http.cache.producers.next_turn}); by default, the global reactor's
        next turn.
    """

    log = Logger()

    def __init__(self, max_size, scheduler=None):
        if scheduler is None:
            from twisted.internet import reactor

            scheduler = next_turn(reactor)
        self.max_size = max_size
        self._scheduler = scheduler
        self._entries = OrderedDict()
        self._size = 0
        self.evictions = 0

    @property
    def size(self):
        return self._size

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        stored = self._entries.get(key)
        if stored is None:
            return None
        self._entries.move_to_end(key)
        return stored.entry

    def held_body(self, entry):
        stored = self._entries.get(entry.key)
        if stored is None or len(stored.body) > CHUNK_SIZE or not same_body(stored.entry, entry):
            return None
        self._entries.move_to_end(entry.key)
        return stored.body

    def read(self, entry, consumer):
        stored = self._entries.get(entry.key)
        if stored is not None:
            self._entries.move_to_end(entry.key)
        # The body of the version asked for, even if it was replaced since:
        # as on disk, where an open body outlives its replacement.
        body = stored.body if stored is not None and same_body(stored.entry, entry) else None

        def open_body():
            if body is None:
                raise OSError(errno.ENOENT, "no such entry")
            return io.BytesIO(body)

        return stream_body(entry, open_body, consumer, self._scheduler, self._discard)

    def writer(self, key, meta):
        return _MemoryWriter(self, key, meta)

    def update(self, key, meta):
        stored = self._entries.get(key)
        if stored is None:
            return None
        entry, size = self._record(Entry(key, meta, stored.entry.length, stored.entry.checksum))
        self._put(key, Held(entry, stored.body, size))
        return entry if key in self._entries else None

    def remove(self, key):
        stored = self._entries.pop(key, None)
        if stored is None:
            return False
        self._size -= stored.size
        return True

    def _commit(self, entry, body):
        entry, size = self._record(entry)
        if size > self.max_size:
            self.remove(entry.key)
            return None
        self._put(entry.key, Held(entry, body, size))
        return entry

    def _record(self, entry):
        record = encode_record(entry)
        return decode_record(record), entry.length + len(record)

    def _put(self, key, stored):
        self.remove(key)
        self._entries[key] = stored
        self._size += stored.size
        while self._size > self.max_size:
            self.remove(next(iter(self._entries)))
            self.evictions += 1

    def _discard(self, entry, error):
        stored = self._entries.get(entry.key)
        if stored is not None and same_body(stored.entry, entry):
            self.log.warn("discarding damaged cache entry: {error}", error=str(error))
            self.remove(entry.key)


@implementer(IWriter)
class _MemoryWriter(BodyWriter):
    def __init__(self, store, key, meta):
        super().__init__(store, key, meta)
        self._body = bytearray()

    def _keep(self, data):
        self._body += data

    def _commit(self, entry):
        # The bytes written stay for those following the body.
        return self._store._commit(entry, bytes(self._body))

    def _discard(self):
        self._body = bytearray()

    def reader(self):
        body = self._body
        return (lambda offset, size: bytes(body[offset : offset + size])), (lambda: None)
