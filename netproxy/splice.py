# -*- test-case-name: tests.test_splice -*-
"""
Splicing a client's connection to a destination's: once the destination is
connected, bytes go both ways unchanged until either side closes, with
back-pressure both ways, as L{twisted.protocols.portforward} does: each
transport is the other's streaming producer, so a slow reader on one side
pauses the writer on the other and nothing is buffered without bound.

The HTTP proxy's CONNECT tunnels and the SOCKS role's tunnels share it.
"""

from typing import Any, Protocol as TypingProtocol

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure


class SpliceOwner(TypingProtocol):
    """
    What a L{SpliceEnd} tells of the destination's side.
    """

    def destination_data(self, data: bytes) -> None:
        """The destination sent C{data}, for the client."""

    def destination_lost(self) -> None:
        """The destination's connection closed."""


class SpliceEnd(Protocol):
    """
    The destination's end of a splice: it hands what it reads, and its
    closing, to its owner.

    :param owner: the tunnel it belongs to.
    """

    # Stream transports: TCP (what destinations are reached by).
    transport: Any

    def __init__(self, owner: SpliceOwner) -> None:
        self.owner = owner

    def dataReceived(self, data: bytes) -> None:
        self.owner.destination_data(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.owner.destination_lost()


def join(client: Any, destination: Any) -> None:
    """
    Make each transport the other's streaming producer, then read from the
    client again (paused while the destination was being connected).

    :param client: the client's transport.
    :param destination: the destination's transport.
    """
    client.registerProducer(destination, True)
    destination.registerProducer(client, True)
    client.resumeProducing()


def close_after_writes(transport: Any) -> None:
    """
    Close one side of a splice once what was written to it is sent.

    Its producer (the other side) is unregistered first: a transport that
    paused that producer would resume it, rather than close, once its buffer
    drains.

    :param transport: a transport, joined or not.
    """
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()
    transport.loseConnection()
