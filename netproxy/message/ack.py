# -*- test-case-name: tests.message.test_ack,tests.integration.test_ack -*-
"""
The ack server: answers every chunk of data it receives with a fixed reply.

It is the simplest destination for the relay, and what the relay's tests and
examples talk to: a raw client sends C{tgmr} and reads C{DONE}.
"""

from twisted.internet.interfaces import IReactorTime

from netproxy.connections import TrackedProtocol, TrackingFactory
from netproxy.escaping import Logger

_LOGGED_TEXT = 200


class AckProtocol(TrackedProtocol):
    """
    Logs each chunk received and writes the factory's reply for it.  The
    connection stays open until the peer closes it or is idle too long.

    The transport is registered as its own producer, so a peer that sends
    without reading the replies stops being read once they back up, instead
    of filling our memory with them.
    """

    log = Logger()
    factory: "AckFactory"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        # The bytes as they came, escaped by the logger: \xff, not a guess at their text.
        self.log.info("received '{text}' from {peer}", text=data[:_LOGGED_TEXT], peer=self.peer, size=len(data))
        self.transport.write(self.factory.reply)


class AckFactory(TrackingFactory):
    """
    Builds L{AckProtocol}s.

    :param reactor: the clock used for idle timeouts.
    :param reply: the bytes answered to each chunk, C{b"DONE"} by default.
    :param idle_timeout: seconds without data before a peer is disconnected.
    """

    protocol = AckProtocol

    def __init__(self, reactor: IReactorTime | None, reply: bytes = b"DONE", idle_timeout: float = 30.0) -> None:
        super().__init__(reactor, idle_timeout)
        self.reply = reply
