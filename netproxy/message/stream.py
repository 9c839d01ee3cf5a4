# -*- test-case-name: tests.message.test_stream -*-
"""
The protocol base of the roles that read a stream of JSON messages and
handle them one at a time, in order (the relay and the reverse proxy), and
the factory base that gives them their size limit.
"""

from collections import deque
from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from zope.interface import implementer

from netproxy.connections import TrackedProtocol, TrackingFactory
from netproxy.errors import FramingError
from netproxy.message.codec import DEFAULT_MAX_SIZE, MessageDecoder


class MessageStreamFactory(TrackingFactory):
    """
    A L{TrackingFactory} whose protocols decode messages of at most
    C{max_size} bytes.

    :param reactor: the clock for the protocols' idle timeouts.
    :param idle_timeout: seconds a peer may stay quiet.
    :param max_size: the largest message accepted, in bytes.
    """

    def __init__(self, reactor: IReactorTime | None = None, idle_timeout: float | None = None,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(reactor, idle_timeout)
        self.max_size = max_size


@implementer(IHalfCloseableProtocol)
class MessageStreamProtocol(TrackedProtocol):
    """
    Decodes the peer's messages into C{queue}, which the subclass works
    through in L{_next}, one message at a time.

    A framing error takes its place in the queue as the L{FramingError}
    itself, so the messages before it are still handled first.  C{closed}
    is set once the connection is refused or lost; nothing more is handled.
    C{stopping} is set by a graceful shutdown: the work in flight finishes,
    nothing new starts, and the connection closes.  A peer that half-closes
    (C{shutdown(SHUT_WR)} after its last message, as naive clients do) has
    what it sent handled and answered, then the connection closes.

    Subclasses define L{_next} and L{working}.
    """

    factory: MessageStreamFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.decoder = MessageDecoder(self.factory.max_size)
        self.queue: deque[dict[str, Any] | FramingError] = deque()
        self.closed = False
        self.stopping = False
        self.peer_done = False

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self.stopping:
            return
        try:
            for message in self.decoder.feed(data):
                self.queue.append(message)
        except FramingError as error:
            self.queue.append(error)
        self._next()

    def _next(self) -> None:
        """
        Handle queued messages while the subclass can take them.
        """
        raise NotImplementedError()

    def working(self) -> bool:
        """
        :returns: whether work is in flight (an exchange, a forward).
        """
        raise NotImplementedError()

    def close_when_idle(self) -> None:
        self.stopping = True
        self.queue.clear()
        if not self.working():
            self.close()

    def work_done(self) -> bool:
        """
        Subclasses call this when the work in flight has ended.

        :returns: whether the connection is being closed (for a shutdown, or
            because the peer has sent all it will and all is answered).
        """
        finished = self.stopping or (self.peer_done and not self.queue)
        if finished and not self.working():
            self.close()
            return True
        return False

    def readConnectionLost(self) -> None:
        self.peer_done = True
        self.work_done()

    def writeConnectionLost(self) -> None:
        self.close()
