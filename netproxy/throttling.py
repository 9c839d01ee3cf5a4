# -*- test-case-name: tests.test_throttling -*-
"""
A connection's transport seen through its client's rate limit
(L{netproxy.rate_limit}): what is written to it is counted, and the limit
pauses its reading and the producer registered on it, on top of whoever
else pauses them (the transport itself when its buffer is full, the
other end of a splice, a request waiting for its origin), without
buffering anything of its own.
"""

from typing import Any, Iterable, Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


class Metered(Protocol):
    """
    What counts a connection's bytes against its client's limit
    (L{netproxy.rate_limit.ClientLimits}).
    """

    def transferred(self, size: int) -> None:
        """C{size} bytes moved on the connection, either way."""


@implementer(IPushProducer)
class _Gate:
    """
    Stands between a transport and the producer registered on it, which is
    paused while either wants it paused: the transport (its buffer is
    full) or the client's bucket (in debt).  Each resumes it only when the
    other does not hold it.
    """

    def __init__(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        self.streaming = streaming
        self._by_consumer = False
        self._throttled = False
        # A pull producer asked for more while throttled.
        self._wanted = False

    def pauseProducing(self) -> None:
        if not (self._by_consumer or self._throttled):
            self.producer.pauseProducing()
        self._by_consumer = True

    def resumeProducing(self) -> None:
        if not self.streaming:
            if self._throttled:
                self._wanted = True
            else:
                self.producer.resumeProducing()
            return
        self._by_consumer = False
        if not self._throttled:
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()

    def throttle(self, on: bool) -> None:
        """Pause the producer for the bucket (C{on}), or stop doing so."""
        if on == self._throttled:
            return
        self._throttled = on
        if not self.streaming:
            if not on and self._wanted:
                self._wanted = False
                self.producer.resumeProducing()
        elif not self._by_consumer:
            if on:
                self.producer.pauseProducing()
            else:
                self.producer.resumeProducing()


class ThrottledTransport:
    """
    A connection's transport, seen through its client's limits: writes are
    counted, and the bucket pauses reading and the registered producer
    (through a L{_Gate}) on top of whoever else pauses them.  Everything
    else is the transport's own.

    :param transport: the connection's transport.
    :param client: the L{netproxy.rate_limit.ClientLimits} of its client's
        address.
    """

    def __init__(self, transport: Any, client: Metered) -> None:
        self._transport = transport
        self._client = client
        self._paused = False
        self._throttled = False
        self._gate: _Gate | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    @property
    def producer(self) -> Any:
        """The producer registered on the transport, or L{None}."""
        gate = self._gate
        return gate.producer if gate is not None and self._transport.producer is gate else None

    def write(self, data: bytes) -> None:
        self._transport.write(data)
        self._client.transferred(len(data))

    def writeSequence(self, data: Iterable[bytes]) -> None:
        data = list(data)
        self._transport.writeSequence(data)
        self._client.transferred(sum(len(piece) for piece in data))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        gate = _Gate(producer, streaming)
        self._transport.registerProducer(gate, streaming)
        self._gate = gate
        if self._throttled:
            gate.throttle(True)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()
        self._gate = None

    def pauseProducing(self) -> None:
        self._paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._throttled:
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._transport.stopProducing()

    def throttle(self, on: bool) -> None:
        """
        Pause reading and the registered producer for the bucket (C{on}),
        or stop doing so (what others paused stays paused).
        """
        if on == self._throttled:
            return
        self._throttled = on
        if on:
            self._transport.pauseProducing()
        elif not self._paused:
            self._transport.resumeProducing()
        if self._gate is not None:
            self._gate.throttle(on)
