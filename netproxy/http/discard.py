# -*- test-case-name: tests.http.test_discard -*-
"""
The transport of a client that takes nothing more: a background
revalidation's, or that of a client answered while the origin's response
is still read to be stored.
"""

from collections.abc import Iterable

from twisted.internet.interfaces import IConsumer, IProducer
from zope.interface import implementer


@implementer(IConsumer)
class Discard:
    """
    A client transport that drops what it is sent, never pushing back: a
    producer registered with it is held only so that it can be handed on.
    """

    producer: IProducer | None = None

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Iterable[bytes]) -> None:
        pass

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass
