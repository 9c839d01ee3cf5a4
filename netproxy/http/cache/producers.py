# -*- test-case-name: tests.http.cache.test_producers,tests.http.cache.test_interfaces -*-
"""
The producers that stream bodies out of a cache store to a client: what
they all are (L{Stream}), and a stored body (L{BodyProducer}, through
L{stream_body}).  A body still being written is followed by
L{netproxy.http.cache.following.BodyTail}, a L{Stream} too.

All do at most one chunk of L{netproxy.http.cache.entry.CHUNK_SIZE} bytes per
reactor turn, each stream on a L{Cooperator} of its own: the global
cooperator runs tasks for up to 10 ms per tick (many chunks to one
consumer), and a shared one-step cooperator would give all streams one chunk
per turn between them.
"""

import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import CooperativeTask, Cooperator, TaskStopped
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.errors import NetproxyError
from netproxy.escaping import Logger
from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    DamagedEntry,
    Entry,
    StreamStopped,
    check_body,
)

#: What a L{Cooperator} takes as its scheduler: called with a step, it runs
#: it later.
Scheduler = Callable[[Callable[[], None]], IDelayedCall]
#: What a stream's steps yield: L{None} to end the turn, or a L{Deferred}
#: that pauses the stream until it fires.
Steps = Iterator["Deferred[None] | None"]


def next_turn(reactor: IReactorTime) -> Scheduler:
    """
    :returns: a L{Cooperator} scheduler that runs each step on the next
        reactor turn, after the turn's network I/O.
    """
    return lambda step: reactor.callLater(0, step)


def _always() -> bool:
    return True


def one_step() -> Callable[[], bool]:
    """
    A L{Cooperator} termination predicate factory that ends each tick after
    one step, so a cooperator with a L{next_turn} scheduler does at most one
    step per reactor turn.
    """
    return _always


@implementer(IPushProducer)
class Stream:
    """
    A push producer writing a body to one consumer, a step per reactor turn.
    Subclasses define the hooks below: how the body is opened (L{_open}),
    the steps that write it (L{_steps}), and how what was opened is closed
    (L{_close}).

    When the consumer calls C{stopProducing}, the L{Deferred} fails with
    L{StreamStopped} rather than firing, so a cut body is never taken for a
    complete one; the producer stays registered, as the consumer that
    stopped it is done with it (as for L{twisted.protocols.basic.FileSender}).

    :param scheduler: the cooperator's scheduler (see L{next_turn}).
    """

    log = Logger()

    # Set by start, before any step runs.
    _consumer: IConsumer
    _done: "Deferred[None]"

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._task: CooperativeTask[Steps] | None = None
        self._paused = False
        self._stopped = False
        self._cancelled = False

    def _open(self) -> bytes | None:
        """
        Open the body, before anything is registered on the consumer.

        :returns: what L{_steps} is given.
        :raises NetproxyError: when the body cannot be sent; nothing is then
            registered or written, and L{_close} is called.
        """
        raise NotImplementedError()

    def _steps(self, opened: bytes | None) -> Steps:
        """
        :param opened: what L{_open} returned.
        :returns: the steps that write the body to C{self._consumer}, each
            write followed by a yield: a consumer may stop the producer from
            within write, and a task must not also end within the step that
            stopped it.  An exception ends the stream with it.
        """
        raise NotImplementedError()

    def _close(self) -> None:
        """
        Close what L{_open} opened, whether or not it succeeded; called once
        the stream has ended, and may be called again.
        """
        raise NotImplementedError()

    def start(self, consumer: IConsumer) -> "Deferred[None]":
        """
        Open the body, then register on C{consumer} and stream.

        :returns: a L{Deferred} that fires with L{None} once the whole body
            was written and the producer unregistered, or fails with the
            error that ended it (L{StreamStopped} if the consumer stopped
            it).  Cancelling it stops the stream and unregisters the producer.
        """
        try:
            opened = self._open()
        except NetproxyError as e:
            self._close()
            return fail(e)
        self._consumer = consumer
        done: Deferred[None] = Deferred(self._cancel)
        self._done = done
        try:
            consumer.registerProducer(self, True)
        except BaseException:
            self._close()
            raise
        # A transport already disconnected stops its producer from within
        # registerProducer; one with a full buffer may pause it.
        if self._stopped:
            self._close()
            done.errback(StreamStopped("the consumer stopped the body stream"))
            return done
        cooperator = Cooperator(terminationPredicateFactory=one_step, scheduler=self._scheduler)
        self._task = task = cooperator.cooperate(self._steps(opened))
        if self._paused:
            task.pause()
        task.whenDone().addBoth(self._ended)
        return done

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            if self._task is not None:
                self._task.pause()

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            if self._task is not None:
                self._task.resume()

    def stopProducing(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.stop()

    def _ended(self, result: object) -> None:
        self._task = None
        self._close()
        if isinstance(result, Failure) and isinstance(result.value, TaskStopped):
            if self._cancelled:
                # Deferred.cancel fails the Deferred with CancelledError.
                self._unregister()
                return
            self._done.errback(StreamStopped("the consumer stopped the body stream"))
            return
        self._unregister()
        if isinstance(result, Failure):
            self._done.errback(result)
        else:
            self._done.callback(None)

    def _cancel(self, done: "Deferred[None]") -> None:
        if self._task is not None:
            self._cancelled = True
            self._task.stop()

    def _unregister(self) -> None:
        # The Deferred must fire whatever the consumer does.
        try:
            self._consumer.unregisterProducer()
        except Exception:
            self.log.failure("could not unregister a cache body producer")


class BodyProducer(Stream):
    """
    Streams one entry's body from a binary file object to a consumer.

    :param entry: the L{Entry} whose body this is.
    :param open_body: returns the body as a binary file object (closed when
        done); L{OSError} from it, or from reading, means the body is damaged.
    :param scheduler: see L{Stream}.
    :param verified: C{True} if the body is known to match the entry (a
        small body checked when it was cached), to skip checking it again.
    :param keep: called with a small body once it is checked, for the store
        to cache it; or L{None}.
    :param window: the first and last offsets (inclusive) of the only bytes
        to send (a range request), or L{None} for the whole body.  A window
        is read from its first byte on, and only its bytes are read: its
        length is checked, but not its checksum, which needs every byte.
    """

    def __init__(
        self,
        entry: Entry,
        open_body: Callable[[], IO[bytes]],
        scheduler: Scheduler,
        verified: bool = False,
        keep: Callable[[bytes], object] | None = None,
        window: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(scheduler)
        self._window = window
        self._entry = entry
        self._open_body = open_body
        self._verified = verified
        self._keep = keep
        self._source: IO[bytes] | None = None

    def _open(self) -> bytes | None:
        """
        Check what can be checked before sending: the body's length, and the
        whole of a small body.

        :returns: the whole body if it is small (checked), else L{None}.
        """
        entry = self._entry
        try:
            self._source = source = self._open_body()
            size = source.seek(0, os.SEEK_END)
            source.seek(0)
            if size != entry.length:
                raise DamagedEntry(entry.key, f"its body is {size} bytes, its record says {entry.length}")
            if self._window is not None:
                source.seek(self._window[0])
                return None
            if entry.length > CHUNK_SIZE:
                return None
            body = source.read(CHUNK_SIZE + 1)
        except OSError as e:
            raise DamagedEntry(entry.key, f"its body cannot be read ({e.strerror or e})") from None
        self._close()
        if not self._verified:
            check_body(entry, body)
            if self._keep is not None:
                self._keep(body)
        return body

    def _steps(self, body: bytes | None) -> Steps:
        if body is not None:
            if body:
                self._consumer.write(body)
                yield None
            return
        entry = self._entry
        source = self._source
        assert source is not None, "a large body is read from its open file"
        if self._window is not None:
            yield from self._window_steps(source, self._window)
            return
        checksum = 0
        remaining = entry.length
        while remaining:
            try:
                chunk = source.read(min(CHUNK_SIZE, remaining))
            except OSError as e:
                raise DamagedEntry(entry.key, f"its body cannot be read ({e.strerror or e})") from None
            if not chunk:
                raise DamagedEntry(entry.key, f"its body ends {remaining} bytes early")
            checksum = zlib.crc32(chunk, checksum)
            remaining -= len(chunk)
            if not remaining and checksum != entry.checksum:
                # The last chunk is held back, so the client never receives
                # all of a body that failed its check, whatever the caller
                # does next.
                raise DamagedEntry(entry.key, "its body does not match its checksum")
            self._consumer.write(chunk)
            yield None

    def _window_steps(self, source: IO[bytes], window: tuple[int, int]) -> Steps:
        entry = self._entry
        remaining = window[1] - window[0] + 1
        while remaining > 0:
            try:
                chunk = source.read(min(CHUNK_SIZE, remaining))
            except OSError as e:
                raise DamagedEntry(entry.key, f"its body cannot be read ({e.strerror or e})") from None
            if not chunk:
                raise DamagedEntry(entry.key, f"its body ends {remaining} bytes early")
            remaining -= len(chunk)
            self._consumer.write(chunk)
            yield None

    def _close(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            source.close()


def stream_body(
    entry: Entry,
    open_body: Callable[[], IO[bytes]],
    consumer: IConsumer,
    scheduler: Scheduler,
    discard: Callable[[Entry, DamagedEntry], None],
    verified: bool = False,
    keep: Callable[[bytes], object] | None = None,
    window: tuple[int, int] | None = None,
) -> "Deferred[None]":
    """
    What L{netproxy.http.cache.interfaces.IStore.read} does once a store has found where the body is.

    :param discard: called with the entry and the L{DamagedEntry} error when
        the body turns out damaged, for the store to remove the entry.
    :returns: see L{netproxy.http.cache.interfaces.IStore.read}.

    The other parameters are L{BodyProducer}'s.
    """

    def damaged(failure: Failure) -> Failure:
        if isinstance(failure.value, DamagedEntry):
            discard(entry, failure.value)
        return failure

    producer = BodyProducer(entry, open_body, scheduler, verified, keep, window)
    return producer.start(consumer).addErrback(damaged)
