# -*- test-case-name: tests.http.cache.test_spill_writer,tests.http.cache.test_interfaces -*-
"""
The writer of L{netproxy.http.cache.sqlite_store.SQLiteStore}: it keeps a
body in memory while it is small, for the row of its entry, and past
L{SMALL_BODY} writes it to a temporary file as it arrives
(L{netproxy.http.cache.body_files}), renamed into place when complete.
"""

import hashlib
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from zope.interface import implementer

from netproxy.escaping import Logger
from netproxy.http.cache import body_files
from netproxy.http.cache.entry import CHUNK_SIZE, Entry
from netproxy.http.cache.interfaces import IWriter
from netproxy.http.cache.producers import Scheduler
from netproxy.http.cache.writer import BodyWriter

#: Bodies up to this size are kept in their entry's row (and are checked
#: whole before they are sent); larger ones in files.
SMALL_BODY = CHUNK_SIZE


@lru_cache(maxsize=4096)
def entry_name(key: bytes) -> bytes:
    """
    :returns: the name of C{key}'s entry, never the key itself (keys are
        URLs, which may be long or private).  Remembered for recent keys,
        as a hit asks for it more than once.
    """
    return hashlib.sha256(key).digest()


@implementer(IWriter)
class SpillWriter(BodyWriter):
    """
    Keeps a body in memory while it is small, and past L{SMALL_BODY} writes
    it to a temporary file as it arrives.

    :param root: the cache directory.
    :param writing: the temporary files being written, to which this
        writer adds its own while it writes it.
    :param log: where errors are logged.
    :param put: stores the complete body: called with the L{Entry} and
        either the body (small) or its file, relative to C{root}; returns
        the stored entry, or L{None}.  The other parameters are
        L{BodyWriter}'s.
    """

    def __init__(
        self,
        key: bytes,
        meta: dict[str, Any],
        max_size: int,
        scheduler: Scheduler,
        root: str,
        writing: set[str],
        log: Logger,
        put: Callable[[Entry, bytes | None, str | None], Entry | None],
    ) -> None:
        super().__init__(key, meta, max_size, scheduler)
        self._root = root
        self._writing = writing
        self._log = log
        self._put = put
        self._pieces: list[bytes] = []
        self._small: bytes | None = None
        self._fd: int | None = None
        # The body's file, relative to the cache directory, once it has one.
        self._path: str | None = None
        # Where its bytes are now: the temporary file, then the stored one.
        self._where: str | None = None

    def _keep(self, data: bytes) -> None:
        if self._fd is None and self._path is None:
            self._pieces.append(data)
            self._small = None
            if self._length <= SMALL_BODY:
                return
            data, self._pieces = b"".join(self._pieces), []
            if not self._spill():
                return
        assert self._fd is not None, "kept only while open"
        try:
            _write_all(self._fd, data)
        except OSError as e:
            self._failed(e)

    def _spill(self) -> bool:
        self._path = body_files.new_body_file(entry_name(self._key))
        try:
            self._fd = body_files.create(self._root, self._path)
        except OSError as e:
            self._failed(e)
            return False
        self._where = os.path.join(self._root, body_files.temporary(self._path))
        self._writing.add(self._where)
        return True

    def _failed(self, error: OSError) -> None:
        self._log.error("could not store cache entry {name}: {error}", name=entry_name(self._key).hex(),
                        error=str(error))
        self.abort()

    def _commit(self, entry: Entry) -> Entry | None:
        if self._path is None:
            body = self._memory()
            self._pieces = []
            return self._put(entry, body, None)
        fd, self._fd = self._fd, None
        temp = self._where
        assert fd is not None and temp is not None, "committed only while open"
        self._writing.discard(temp)
        final = os.path.join(self._root, self._path)
        try:
            os.close(fd)
            os.rename(temp, final)
        except OSError as e:
            self._log.error("could not store cache entry {name}: {error}", name=entry_name(self._key).hex(),
                            error=str(e))
            body_files.delete(self._root, body_files.temporary(self._path), self._log)
            return None
        self._where = final
        return self._put(entry, None, self._path)

    def _memory(self) -> bytes:
        if self._small is None:
            self._small = b"".join(self._pieces)
            self._pieces = [self._small]
        return self._small

    def reader(self) -> tuple[Callable[[int, int], bytes], Callable[[], object]]:
        # Once the body has a file, a descriptor of its own, still valid
        # once the file is renamed into place (or evicted).
        source: int | None = None

        def read(offset: int, size: int) -> bytes:
            nonlocal source
            if self._where is None:
                return self._memory()[offset : offset + size]
            if source is None:
                source = os.open(self._where, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return os.pread(source, size, offset)

        def release() -> None:
            nonlocal source
            if source is not None:
                os.close(source)
                source = None

        if self._where is not None:
            read(0, 0)
        return read, release

    def _discard(self) -> None:
        self._pieces, self._small = [], None
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._where is not None:
            self._writing.discard(self._where)
        try:
            os.close(fd)
        except OSError:
            pass
        if self._path is not None:
            body_files.delete(self._root, body_files.temporary(self._path), self._log)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
