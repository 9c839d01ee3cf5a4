"""
What a cache store is: the L{IStore} interface, the L{Entry} it holds, the
record an entry's metadata is kept as, and the L{BodyWriter} every store's
writer builds on.

A store maps opaque C{bytes} keys, chosen by the cache layer, to an L{Entry}
and a body.  L{netproxy.http.cache.memory_store.MemoryStore} (for tests) and
L{netproxy.http.cache.file_store.FileStore} (on disk) implement L{IStore}; both
send bodies through L{netproxy.http.cache.producers}, so flow control, damage
checks and the bound of one chunk per reactor turn are the same whichever
store serves.
"""

import base64
import json
import zlib
from dataclasses import dataclass

from zope.interface import Attribute, Interface

from netproxy.errors import NetproxyError

#: The most body bytes a store reads or writes to a consumer in one reactor
#: turn; bodies up to this size are checked whole before any byte is sent.
CHUNK_SIZE = 64 * 1024

#: The version of the record format written by L{encode_record}.
RECORD_VERSION = 1


class DamagedEntry(NetproxyError):
    """
    A stored body does not match its entry's length or checksum, or cannot be
    read: the store has discarded the entry, and the response must be fetched
    afresh (or, if part of the body was already sent, the client's
    connection aborted).

    :ivar key: the entry's key.
    """

    def __init__(self, key, reason):
        super().__init__(f"damaged cache entry: {reason}")
        self.key = key


class BodyAbandoned(NetproxyError):
    """
    A body followed as it was written will not be complete: its writer was
    aborted (the response was cut short or too large to store) or could
    not write it.
    """


class StreamStopped(NetproxyError):
    """
    The consumer stopped a body stream (its client went away) before the end
    of the body.
    """


@dataclass(frozen=True)
class Entry:
    """
    A stored response as a store knows it.  Entries are values: to change an
    entry's metadata, call L{IStore.update}.

    :ivar key: the key chosen by the cache layer.
    :ivar meta: what the cache layer stored with the body (status, headers,
        times...); JSON-serialisable, and read-only once stored.
    :ivar length: the body's size in bytes.
    :ivar checksum: C{zlib.crc32} of the body.
    """

    key: bytes
    meta: dict
    length: int
    # CRC-32 rather than a cryptographic hash: it guards against torn and
    # garbled writes, not against an adversary who can write the cache
    # directory, and it costs a fraction of SHA-256 on every body stored.
    checksum: int


class Held:
    """
    An entry a store holds in memory: its L{Entry}, its body when it is
    kept too (or L{None}), and the bytes it counts for.
    """

    __slots__ = ("entry", "body", "size")

    def __init__(self, entry, body, size):
        self.entry = entry
        self.body = body
        self.size = size


def same_body(a, b):
    """
    :returns: whether entries C{a} and C{b} describe the same body, so that
        what was read or checked for one holds for the other.
    """
    return a.length == b.length and a.checksum == b.checksum


def check_body(entry, body):
    """
    :param entry: an L{Entry}.
    :param body: the whole body stored for it.
    :raises DamagedEntry: if C{body} does not match the entry's length and
        checksum.
    """
    if len(body) != entry.length:
        raise DamagedEntry(entry.key, f"its body is {len(body)} bytes, its record says {entry.length}")
    if zlib.crc32(body) != entry.checksum:
        raise DamagedEntry(entry.key, "its body does not match its checksum")


def encode_record(entry) -> bytes:
    """
    :returns: the JSON record of C{entry}: the key (base64), the metadata,
        the body's length and checksum, and the format version.  A store's
        size accounts for each entry as its body's length plus this record's.
    :raises TypeError: if the entry's metadata is not JSON-serialisable.
    """
    record = {
        "version": RECORD_VERSION,
        "key": base64.b64encode(entry.key).decode("ascii"),
        "meta": entry.meta,
        "length": entry.length,
        "checksum": entry.checksum,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("ascii")


def decode_record(data: bytes) -> Entry:
    """
    :returns: the entry recorded in C{data} by L{encode_record}, with its own
        copy of the metadata.
    :raises ValueError: if C{data} is not such a record.
    """
    record = json.loads(data)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise ValueError("not a cache record of a known version")
    try:
        key = base64.b64decode(record["key"], validate=True)
        meta, length, checksum = record["meta"], record["length"], record["checksum"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"incomplete cache record ({e})") from None
    # bool is an int: type() keeps True out of the length.
    if not isinstance(meta, dict) or type(length) is not int or type(checksum) is not int:
        raise ValueError("malformed cache record")
    if length < 0 or not 0 <= checksum < 2**32:
        raise ValueError("malformed cache record")
    return Entry(key, meta, length, checksum)


def next_turn(reactor):
    """
    :param reactor: provides C{callLater}.
    :returns: a L{Cooperator} scheduler that runs each step on the next
        reactor turn, after the turn's network I/O.
    """
    return lambda step: reactor.callLater(0, step)


def one_step():
    """
    A L{Cooperator} termination predicate factory that ends each tick after
    one step, so a cooperator with a L{next_turn} scheduler does at most one
    step per reactor turn.
    """
    return lambda: True


class IWriter(Interface):
    """
    Stores one response body as it arrives.
    """

    def write(data):
        """
        Append C{data} (C{bytes}) to the body.  Past the store's C{max_size}
        the body is dropped at once and later data ignored: the entry will
        not be stored.
        """

    def finish():
        """
        Make the entry visible to C{get}, replacing any older entry for the key.

        :returns: the stored L{Entry}, or L{None} if it was not stored (too
            large, aborted, or the store could not write it).
        """

    def abort():
        """
        Drop the body: nothing becomes visible, and what was written is freed.
        """

    def follow(consumer):
        """
        Stream the body to C{consumer} as it is written, with a push
        producer registered on it, at most L{CHUNK_SIZE} bytes per reactor
        turn: what was written so far at the consumer's pace, then each new
        piece.  Call it before C{finish}.

        :returns: a L{Deferred} that fires with L{None} once the whole body
            was written to C{consumer}, the entry stored and the producer
            unregistered; or fails with L{BodyAbandoned} when the body will
            not be complete (aborted, too large, a write failed), or with
            L{StreamStopped} if the consumer stopped the producer.
            Cancelling it stops the stream and unregisters the producer.
        """


class IStore(Interface):
    """
    A bounded store of cache entries, evicting the least recently used.
    """

    size = Attribute("The bytes the entries take, as accounted: bodies plus records.")
    max_size = Attribute(
        "The most bytes kept: after each finish, the least recently used entries are evicted until size <= max_size."
    )
    evictions = Attribute("How many entries were evicted to keep within max_size, since the store was made.")

    def __len__():
        """
        :returns: the number of entries.
        """

    def get(key):
        """
        Look an entry up, and count it as used.

        :param key: C{bytes}.
        :returns: the L{Entry} stored for C{key}, or L{None}.  An entry whose
            record cannot be read is discarded.
        """

    def held_body(entry):
        """
        The body of C{entry} when the store holds it in memory, already
        checked, and it is at most L{CHUNK_SIZE} bytes: the caller may then
        send it at once, without a producer; counts as a use.

        :returns: C{bytes}, or L{None} (call L{read} instead).
        """

    def read(entry, consumer):
        """
        Stream C{entry}'s body to C{consumer}, with a push producer registered
        on it, at most L{CHUNK_SIZE} bytes per reactor turn; counts as a use.

        A body of up to L{CHUNK_SIZE} bytes is checked before C{read} returns:
        if it is damaged, the L{Deferred} has already failed and nothing was
        registered on or written to C{consumer}.  Otherwise nothing is written
        before the next turn, so the caller may write the response head after
        C{read} returns.  A larger body's checksum is known only at its end:
        its last chunk is then held back and the L{Deferred} fails, and the
        caller must abort its client's connection.

        :returns: a L{Deferred} that fires with L{None} once the whole body
            was written and the producer unregistered, or fails with
            L{DamagedEntry} (the entry is discarded) or with L{StreamStopped}
            if the consumer stopped the producer.  Cancelling it stops the
            stream and unregisters the producer.
        """

    def writer(key, meta):
        """
        :param key: C{bytes}.
        :param meta: the JSON-serialisable metadata to store with the body.
        :returns: an L{IWriter} for the body.
        """

    def update(key, meta):
        """
        Replace an entry's metadata (after a 304), keeping its body; counts
        as a use.

        :returns: the updated L{Entry}, or L{None} if there is no entry for C{key}.
        """

    def remove(key):
        """
        :returns: C{True} if an entry for C{key} existed and was removed.
        """


class BodyWriter:
    """
    What every store's L{IWriter} does: count, checksum and bound a body as
    it arrives, refuse use after C{finish}, and let consumers follow the
    body as it grows.  A store's writer keeps the bytes: C{_keep(data)},
    C{_commit(entry)} (returning the stored L{Entry} or L{None}),
    C{_discard()}, and C{reader()} for those following.

    :ivar tails: the L{netproxy.http.cache.producers.BodyTail}s following it.
    """

    def __init__(self, store, key, meta):
        self._store = store
        self._key = key
        self._meta = meta
        self._length = 0
        self._checksum = 0
        self._finished = False
        self._open = True
        self._stored = None
        self.tails = []

    @property
    def written(self):
        """
        The bytes of body written so far.
        """
        return self._length

    @property
    def complete(self):
        """
        Whether the whole body was written and stored.
        """
        return self._stored is not None

    @property
    def abandoned(self):
        """
        Whether the body will never be complete.
        """
        return not self._open and self._stored is None

    def reader(self):
        """
        :returns: C{(read, release)}: C{read(offset, size)} returns up to
            C{size} bytes of what was written from C{offset} on, and
            C{release()} frees what C{read} holds.
        :raises OSError: when what was written cannot be read.
        """
        raise NotImplementedError()

    def write(self, data):
        if self._finished:
            raise RuntimeError("write to a finished cache writer")
        if not self._open:
            return
        self._length += len(data)
        if self._length > self._store.max_size:
            # Too large to store: nothing of it is kept.
            self.abort()
            return
        self._checksum = zlib.crc32(data, self._checksum)
        self._keep(data)
        self._wake()

    def finish(self):
        if self._finished:
            raise RuntimeError("cache writer finished twice")
        self._finished = True
        if not self._open:
            return None
        self._open = False
        try:
            self._stored = self._commit(Entry(self._key, self._meta, self._length, self._checksum))
        finally:
            # Those following learn the outcome, whatever it is.
            self._wake()
        return self._stored

    def abort(self):
        if self._open:
            self._open = False
            self._discard()
            self._wake()

    def follow(self, consumer):
        from netproxy.http.cache.producers import BodyTail

        return BodyTail(self, self._store._scheduler).start(consumer)

    def _wake(self):
        for tail in list(self.tails):
            tail.wake()
