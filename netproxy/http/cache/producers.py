"""
The producers that stream bodies out of a cache store to a client: a stored
body (L{BodyProducer}, through L{stream_body}), and a body still being
written, followed as it grows (L{BodyTail}, for the requests collapsed onto
another's upstream fetch).

Both do at most one chunk of L{netproxy.http.cache.entry.CHUNK_SIZE} bytes per
reactor turn, each stream on a L{Cooperator} of its own: the global
cooperator runs tasks for up to 10 ms per tick (many chunks to one
consumer), and a shared one-step cooperator would give all streams one chunk
per turn between them.
"""

import os
import zlib

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Cooperator, TaskStopped
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.errors import NetproxyError
from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    BodyAbandoned,
    DamagedEntry,
    StreamStopped,
    check_body,
)


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



@implementer(IPushProducer)
class _Stream:
    """
    A push producer writing a body to one consumer, a step per reactor turn.
    Subclasses say how the body is opened (C{_open}, which may raise a
    L{NetproxyError} before anything is registered) and give the steps
    (C{_steps}, a generator of writes to C{self._consumer}), and close what
    they opened (C{_close}).

    When the consumer calls C{stopProducing}, the L{Deferred} fails with
    L{StreamStopped} rather than firing, so a cut body is never taken for a
    complete one; the producer stays registered, as the consumer that
    stopped it is done with it (as for L{twisted.protocols.basic.FileSender}).

    :param scheduler: the cooperator's scheduler (see
        L{netproxy.http.cache.producers.next_turn}).
    """

    log = Logger()

    def __init__(self, scheduler):
        self._scheduler = scheduler
        self._consumer = None
        self._task = None
        self._paused = False
        self._stopped = False
        self._cancelled = False
        self._done = None

    def start(self, consumer) -> Deferred:
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
        self._done = Deferred(self._cancel)
        try:
            consumer.registerProducer(self, True)
        except BaseException:
            self._close()
            raise
        # A transport already disconnected stops its producer from within
        # registerProducer; one with a full buffer may pause it.
        if self._stopped:
            self._close()
            self._done.errback(StreamStopped("the consumer stopped the body stream"))
            return self._done
        cooperator = Cooperator(terminationPredicateFactory=one_step, scheduler=self._scheduler)
        self._task = cooperator.cooperate(self._steps(opened))
        if self._paused:
            self._task.pause()
        self._task.whenDone().addBoth(self._ended)
        return self._done

    def pauseProducing(self):
        if not self._paused:
            self._paused = True
            if self._task is not None:
                self._task.pause()

    def resumeProducing(self):
        if self._paused:
            self._paused = False
            if self._task is not None:
                self._task.resume()

    def stopProducing(self):
        self._stopped = True
        if self._task is not None:
            self._task.stop()

    def _ended(self, result):
        self._task = None
        self._close()
        if isinstance(result, Failure) and result.check(TaskStopped):
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

    def _cancel(self, done):
        if self._task is not None:
            self._cancelled = True
            self._task.stop()

    def _unregister(self):
        # The Deferred must fire whatever the consumer does.
        try:
            self._consumer.unregisterProducer()
        except Exception:
            self.log.failure("could not unregister a cache body producer")


class BodyProducer(_Stream):
    """
    Streams one entry's body from a binary file object to a consumer.

    :param entry: the L{Entry} whose body this is.
    :param open_body: returns the body as a binary file object (closed when
        done); L{OSError} from it, or from reading, means the body is damaged.
    :param scheduler: see L{_Stream}.
    :param verified: C{True} if the body is known to match the entry (a
        small body checked when it was cached), to skip checking it again.
    :param keep: called with a small body once it is checked, for the store
        to cache it; or L{None}.
    """

    def __init__(self, entry, open_body, scheduler, verified=False, keep=None):
        super().__init__(scheduler)
        self._entry = entry
        self._open_body = open_body
        self._verified = verified
        self._keep = keep
        self._source = None

    def _open(self):
        """
        Check what can be checked before sending: the body's length, and the
        whole of a small body.

        :returns: the whole body if it is small (checked), else L{None}.
        """
        entry = self._entry
        try:
            self._source = self._open_body()
            size = self._source.seek(0, os.SEEK_END)
            self._source.seek(0)
            if size != entry.length:
                raise DamagedEntry(entry.key, f"its body is {size} bytes, its record says {entry.length}")
            if entry.length > CHUNK_SIZE:
                return None
            body = self._source.read(CHUNK_SIZE + 1)
        except OSError as e:
            raise DamagedEntry(entry.key, f"its body cannot be read ({e.strerror or e})") from None
        self._close()
        if not self._verified:
            check_body(entry, body)
            if self._keep is not None:
                self._keep(body)
        return body

    def _steps(self, body):
        # Each write is followed by a yield, even the last: a consumer may
        # stop the producer from within write, and a task must not also end
        # within the step that stopped it.
        if body is not None:
            if body:
                self._consumer.write(body)
                yield None
            return
        entry = self._entry
        checksum = 0
        remaining = entry.length
        while remaining:
            try:
                chunk = self._source.read(min(CHUNK_SIZE, remaining))
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

    def _close(self):
        if self._source is not None:
            source, self._source = self._source, None
            source.close()


def stream_body(entry, open_body, consumer, scheduler, discard, verified=False, keep=None) -> Deferred:
    """
    What L{IStore.read} does once a store has found where the body is.

    :param discard: called with the entry and the L{DamagedEntry} error when
        the body turns out damaged, for the store to remove the entry.
    :returns: see L{IStore.read}.

    The other parameters are L{BodyProducer}'s.
    """

    def damaged(failure):
        if failure.check(DamagedEntry):
            discard(entry, failure.value)
        return failure

    producer = BodyProducer(entry, open_body, scheduler, verified, keep)
    return producer.start(consumer).addErrback(damaged)


class BodyTail(_Stream):
    """
    Streams a body as a L{netproxy.http.cache.writer.BodyWriter} writes it: what
    was written so far at the consumer's pace, then each new piece once
    written, until the writer finishes.  A consumer slower than the writer
    reads behind it from the store; one faster waits for it.

    :param writer: the L{netproxy.http.cache.writer.BodyWriter}.
    :param scheduler: see L{_Stream}.
    """

    def __init__(self, writer, scheduler):
        super().__init__(scheduler)
        self._writer = writer
        self._read = None
        self._release = None
        self._offset = 0
        self._more = None

    def _open(self):
        if self._writer.abandoned:
            raise BodyAbandoned("the response being stored was not completed")
        try:
            self._read, self._release = self._writer.reader()
        except OSError as e:
            raise BodyAbandoned(f"the body being stored cannot be read ({e.strerror or e})") from None
        self._writer.tails.append(self)
        return None

    def wake(self):
        """
        The writer has written more, or finished or given up.
        """
        more, self._more = self._more, None
        if more is not None:
            more.callback(None)

    def _steps(self, ignored):
        writer = self._writer
        while True:
            available = writer.written - self._offset
            if writer.abandoned:
                raise BodyAbandoned("the response being stored was not completed")
            if available > 0:
                try:
                    chunk = self._read(self._offset, min(CHUNK_SIZE, available))
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

    def _close(self):
        if self._release is not None:
            release, self._release = self._release, None
            self._writer.tails.remove(self)
            release()
