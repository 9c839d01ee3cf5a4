"""
L{BodyWriter}, what every store's L{netproxy.http.cache.interfaces.IWriter}
builds on: it counts, checksums and bounds a body as it arrives, and lets
the requests collapsed onto its fetch follow the body as it grows.
"""

import zlib

from netproxy.http.cache.entry import Entry
from netproxy.http.cache.producers import BodyTail


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
        return BodyTail(self, self._store._scheduler).start(consumer)

    def _wake(self):
        for tail in list(self.tails):
            tail.wake()
