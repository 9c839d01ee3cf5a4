# -*- test-case-name: tests.message.test_upper,tests.integration.test_upper -*-
"""
The upper server: sends back every byte it receives with ASCII a-z turned
into A-Z, over TCP (streamed) and UDP (one reply datagram per datagram).

Only a-z change: C{bytes.upper} leaves every non-ASCII byte alone, so UTF-8
text is never altered beyond its ASCII letters.
"""

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol, connectionDone
from twisted.python.failure import Failure

from netproxy.connections import TrackedProtocol, TrackingFactory
from netproxy.escaping import Logger


class UpperProtocol(TrackedProtocol):
    """
    Streams the upper-cased copy of what it reads back to the peer.

    The transport is registered as its own producer, so a peer that sends
    without reading stops being read once its replies back up, instead of
    filling our memory.
    """

    log = Logger()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.received = 0
        self.transport.registerProducer(self.transport, True)
        self.log.info("connection from {peer}", peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.received += len(data)
        self.transport.write(data.upper())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.log.info("connection from {peer} closed after {size} bytes", peer=self.peer, size=self.received)


class UpperFactory(TrackingFactory):
    """
    Builds L{UpperProtocol}s.

    :param reactor: the clock used for idle timeouts.
    :param idle_timeout: seconds without data before a peer is disconnected.
    """

    protocol = UpperProtocol

    def __init__(self, reactor: IReactorTime | None, idle_timeout: float = 30.0) -> None:
        super().__init__(reactor, idle_timeout)


class UpperDatagramProtocol(DatagramProtocol):
    """
    Answers each datagram with its upper-cased copy, sent to its sender.
    """

    log = Logger()
    transport: Any

    def datagramReceived(self, data: bytes, address: Any) -> None:
        self.log.debug("{size} bytes from {peer}", size=len(data), peer="%s:%s" % address[:2])
        self.transport.write(data.upper(), address)
