# -*- test-case-name: tests.http.cache.test_following,tests.http.cache.test_interfaces -*-
"""
Following a body as it is written, for the requests collapsed onto another's
upstream fetch: L{BodyTail} streams what a writer (L{Followed}, as
L{netproxy.http.cache.writer.BodyWriter} is) has written so far, then each
new piece, a chunk per reactor turn like every
L{netproxy.http.cache.producers.Stream}.
"""

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred

from netproxy.http.cache.entry import CHUNK_SIZE, BodyAbandoned
from netproxy.http.cache.producers import Scheduler, Steps, Stream


class Followed(Protocol):
    """
    What L{BodyTail} follows: a body being written, as
    L{netproxy.http.cache.writer.BodyWriter} writes it.
    """

    #: The L{BodyTail}s following it, woken when it writes or ends.
    tails: "list[BodyTail]"

    @property
    def written(self) -> int:
        """The bytes of body written so far."""

    @property
    def complete(self) -> bool:
        """Whether the whole body was written and stored."""

    @property
    def abandoned(self) -> bool:
        """Whether the body will never be complete."""

    def reader(self) -> tuple[Callable[[int, int], bytes], Callable[[], object]]:
        """
        :returns: C{(read, release)}: C{read(offset, size)} returns up to
            C{size} bytes of what was written from C{offset} on, and
            C{release()} frees what C{read} holds.
        :raises OSError: when what was written cannot be read.
        """


class BodyTail(Stream):
    """
    Streams a body as it is written: what was written so far at the
    consumer's pace, then each new piece once written, until the writer
    finishes.  A consumer slower than the writer reads behind it from the
    store; one faster waits for it.

    :param writer: the L{Followed} writer.
    :param scheduler: see L{netproxy.http.cache.producers.Stream}.
    """

    def __init__(self, writer: Followed, scheduler: Scheduler) -> None:
        super().__init__(scheduler)
        self._writer = writer
        self._read: Callable[[int, int], bytes] | None = None
        self._release: Callable[[], object] | None = None
        self._offset = 0
        self._more: Deferred[None] | None = None

    def _open(self) -> None:
        if self._writer.abandoned:
            raise BodyAbandoned("the response being stored was not completed")
        try:
            self._read, self._release = self._writer.reader()
        except OSError as e:
            raise BodyAbandoned(f"the body being stored cannot be read ({e.strerror or e})") from None
        self._writer.tails.append(self)
        return None

    def wake(self) -> None:
        """
        The writer has written more, or finished or given up.
        """
        more, self._more = self._more, None
        if more is not None:
            more.callback(None)

    def _steps(self, ignored: bytes | None) -> Steps:
        writer = self._writer
        read = self._read
        assert read is not None, "opened before the steps run"
        while True:
            available = writer.written - self._offset
            if writer.abandoned:
                raise BodyAbandoned("the response being stored was not completed")
            if available > 0:
                try:
                    chunk = read(self._offset, min(CHUNK_SIZE, available))
                except OSError as e:
                    raise BodyAbandoned(f"the body being stored cannot be read ({e.strerror or e})") from None
                if not chunk:
                    raise BodyAbandoned("the body being stored is shorter than written")
                self._offset += len(chunk)
                self._consumer.write(chunk)
                yield None
            elif writer.complete:
                return
            else:
                # Caught up: a yielded Deferred pauses the task until it fires.
                self._more = Deferred()
                yield self._more

    def _close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            self._writer.tails.remove(self)
            release()
