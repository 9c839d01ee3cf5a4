# -*- test-case-name: tests.http.cache.test_interfaces -*-
"""
The seams of a cache store: L{IStore}, what the cache layer asks of a store,
and L{IWriter}, what it asks of the writer of one body.

L{netproxy.testing.MemoryStore} (for tests) and
L{netproxy.http.cache.sqlite_store.SQLiteStore} (on disk) implement L{IStore};
both send bodies through L{netproxy.http.cache.producers}, so flow control,
damage checks and the bound of one chunk
(L{netproxy.http.cache.entry.CHUNK_SIZE}) per reactor turn are the same
whichever store serves.  The errors named here are those of
L{netproxy.http.cache.entry}.
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from zope.interface import Attribute, Interface

from netproxy.http.cache.entry import Entry


class IWriter(Interface):
    """
    Stores one response body as it arrives.
    """

    abandoned = Attribute(
        "Whether the body will never be stored: aborted, too large, or the store could not write it."
    )

    def write(data: bytes) -> None:
        """
        Append C{data} to the body.  Past the store's C{max_size} the body is
        dropped at once and later data ignored: the entry will not be
        stored.
        """

    def finish() -> Entry | None:
        """
        Make the entry visible to C{get}, replacing any older entry for the key.

        :returns: the stored L{Entry}, or L{None} if it was not stored (too
            large, aborted, or the store could not write it).
        """

    def abort() -> None:
        """
        Drop the body: nothing becomes visible, and what was written is freed.
        """

    def follow(consumer: IConsumer) -> "Deferred[None]":
        """
        Stream the body to C{consumer} as it is written, with a push
        producer registered on it, at most C{CHUNK_SIZE} bytes per reactor
        turn: what was written so far at the consumer's pace, then each new
        piece.  Call it before C{finish}.

        :returns: a L{Deferred} that fires with L{None} once the whole body
            was written to C{consumer}, the entry stored and the producer
            unregistered; or fails with C{BodyAbandoned} when the body will
            not be complete (aborted, too large, a write failed), or with
            C{StreamStopped} if the consumer stopped the producer.
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

    def __len__() -> int:
        """
        :returns: the number of entries.
        """

    def get(key: bytes) -> Entry | None:
        """
        Look an entry up, and count it as used.

        :returns: the L{Entry} stored for C{key}, or L{None}.  An entry whose
            record cannot be read is discarded.
        """

    def held_body(entry: Entry) -> bytes | None:
        """
        The body of C{entry} when the store holds it in memory, already
        checked, and it is at most C{CHUNK_SIZE} bytes: the caller may then
        send it at once, without a producer; counts as a use.

        :returns: the body, or L{None} (call L{read} instead).
        """

    def read(entry: Entry, consumer: IConsumer, window: tuple[int, int] | None = None) -> "Deferred[None]":
        """
        Stream C{entry}'s body to C{consumer}, with a push producer registered
        on it, at most C{CHUNK_SIZE} bytes per reactor turn; counts as a use.
        With a C{window}, C{(first, last)} offsets within the body, only
        those bytes are read and sent (a range request): their length is
        checked, not the body's checksum, and nothing is written before the
        next turn.

        A body of up to C{CHUNK_SIZE} bytes is checked before C{read}
        returns: if it is damaged, the L{Deferred} has already failed and
        nothing was registered on or written to C{consumer}.  Otherwise
        nothing is written before the next turn, so the caller may write the
        response head after C{read} returns.  A larger body's checksum is
        known only at its end: its last chunk is then held back and the
        L{Deferred} fails, and the caller must abort its client's connection.

        :returns: a L{Deferred} that fires with L{None} once the whole body
            was written and the producer unregistered, or fails with
            C{DamagedEntry} (the entry is discarded) or with
            C{StreamStopped} if the consumer stopped the producer.
            Cancelling it stops the stream and unregisters the producer.
        """

    def writer(key: bytes, meta: dict[str, Any]) -> IWriter:
        """
        :param meta: the JSON-serialisable metadata to store with the body.
        :returns: an L{IWriter} for the body.
        """

    def update(key: bytes, meta: dict[str, Any]) -> Entry | None:
        """
        Replace an entry's metadata (after a 304), keeping its body; counts
        as a use.

        :returns: the updated L{Entry}, or L{None} if there is no entry for C{key}.
        """

    def remove(key: bytes) -> bool:
        """
        Remove the entry for C{key} for good: once this returns, it is not
        served again, by this store or (for a store on disk) by another
        process sharing it or after a restart.

        :returns: C{True} if an entry for C{key} existed and was removed.
        :raises netproxy.errors.EntryNotRemoved: when it existed and could
            not be removed for good; the store serves it no more itself.
        """
