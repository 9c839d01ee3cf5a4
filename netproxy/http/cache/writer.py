# -*- test-case-name: tests.http.cache.test_writer,tests.http.cache.test_interfaces -*-
"""
L{BodyWriter}, what every store's L{netproxy.http.cache.interfaces.IWriter}
builds on: it counts, checksums and bounds a body as it arrives, and lets
the requests collapsed onto its fetch follow the body as it grows.
"""

import zlib
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer

from netproxy.http.cache.entry import Entry
from netproxy.http.cache.following import BodyTail
from netproxy.http.cache.producers import Scheduler


class BodyWriter:
    """
    What every store's L{netproxy.http.cache.interfaces.IWriter} does:
    count, checksum and bound a body as it arrives, refuse use after
    C{finish}, and let consumers follow the body as it grows.  A store's
    writer keeps the bytes, through the hooks below: L{_keep}, L{_commit},
    L{_discard}, and L{reader} for those following.

    :param key: the entry's key.
    :param meta: the metadata to store with the body.
    :param max_size: the store's C{max_size}: a longer body is not stored.
    :param scheduler: what those following the body stream with (see
        L{netproxy.http.cache.producers.next_turn}).
    :ivar tails: the L{netproxy.http.cache.following.BodyTail}s following it.
    """

    def __init__(self, key: bytes, meta: dict[str, Any], max_size: int, scheduler: Scheduler) -> None:
        self._key = key
        self._meta = meta
        self._max_size = max_size
        self._scheduler = scheduler
        self._length = 0
        self._checksum = 0
        self._finished = False
        self._open = True
        self._stored: Entry | None = None
        self.tails: list[BodyTail] = []

    @property
    def written(self) -> int:
        """
        The bytes of body written so far.
        """
        return self._length

    @property
    def complete(self) -> bool:
        """
        Whether the whole body was written and stored.
        """
        return self._stored is not None

    @property
    def abandoned(self) -> bool:
        """
        Whether the body will never be complete.
        """
        return not self._open and self._stored is None

    def _keep(self, data: bytes) -> None:
        """
        Keep C{data}, the next piece of the body; call L{abort} if it cannot
        be kept.
        """
        raise NotImplementedError()

    def _commit(self, entry: Entry) -> Entry | None:
        """
        Store the whole body kept, as C{entry}.

        :returns: the stored L{Entry}, or L{None} if it was not stored.
        """
        raise NotImplementedError()

    def _discard(self) -> None:
        """
        Free what was kept: the body will not be stored.
        """
        raise NotImplementedError()

    def reader(self) -> tuple[Callable[[int, int], bytes], Callable[[], object]]:
        """
        :returns: C{(read, release)}: C{read(offset, size)} returns up to
            C{size} bytes of what was written from C{offset} on, and
            C{release()} frees what C{read} holds.
        :raises OSError: when what was written cannot be read.
        """
        raise NotImplementedError()

    def write(self, data: bytes) -> None:
        if self._finished:
            raise RuntimeError("write to a finished cache writer")
        if not self._open:
            return
        self._length += len(data)
        if self._length > self._max_size:
            # Too large to store: nothing of it is kept.
            self.abort()
            return
        self._checksum = zlib.crc32(data, self._checksum)
        self._keep(data)
        self._wake()

    def finish(self) -> Entry | None:
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

    def abort(self) -> None:
        if self._open:
            self._open = False
            self._discard()
            self._wake()

    def follow(self, consumer: IConsumer) -> "Deferred[None]":
        return BodyTail(self, self._scheduler).start(consumer)

    def _wake(self) -> None:
        for tail in list(self.tails):
            tail.wake()
