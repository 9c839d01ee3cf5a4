"""
The protocol base of the roles that read a stream of JSON messages and
handle them one at a time, in order (the relay and the reverse proxy).
"""

from collections import deque

from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from netproxy.connections import TrackedProtocol
from netproxy.errors import FramingError
from netproxy.message.codec import MessageDecoder


@implementer(IHalfCloseableProtocol)
class MessageStreamProtocol(TrackedProtocol):
    """
    Decodes the peer's messages into C{queue}, which the subclass works
    through in C{_next}, one message at a time.

    A framing error takes its place in the queue as the L{FramingError}
    itself, so the messages before it are still handled first.  C{closed}
    is set once the connection is refused or lost; nothing more is handled.
    C{stopping} is set by a graceful shutdown: the work in flight finishes,
    nothing new starts, and the connection closes.  A peer that half-closes
    (C{shutdown(SHUT_WR)} after its last message, as naive clients do) has
    what it sent handled and answered, then the connection closes.  The
    factory provides C{max_size}.
    """

    def connectionMade(self):
        super().connectionMade()
        self.decoder = MessageDecoder(self.factory.max_size)
        self.queue = deque()
        self.closed = False
        self.stopping = False
        self.peer_done = False

    def dataReceived(self, data):
        self.resetTimeout()
        if self.stopping:
            return
        try:
            for message in self.decoder.feed(data):
                self.queue.append(message)
        except FramingError as error:
            self.queue.append(error)
        self._next()

    def _next(self):
        """
        Handle queued messages while the subclass can take them.
        """
        raise NotImplementedError()

    def working(self):
        """
        :returns: whether work is in flight (an exchange, a forward).
        """
        raise NotImplementedError()

    def close_when_idle(self):
        self.stopping = True
        self.queue.clear()
        if not self.working():
            self.close()

    def work_done(self):
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

    def readConnectionLost(self):
        self.peer_done = True
        self.work_done()

    def writeConnectionLost(self):
        self.close()
