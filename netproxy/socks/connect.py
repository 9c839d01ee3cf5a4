# -*- test-case-name: tests.socks.test_connect,tests.socks.test_protocol -*-
"""
A CONNECT's destination: connected once the address it leads to has passed
the rules (L{netproxy.dialing.connect_checked}), then spliced to the client
(L{netproxy.splice}) until either side closes.
"""

from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from netproxy.connections import format_address
from netproxy.dialing import connect_checked
from netproxy.escaping import Logger
from netproxy.socks import negotiation
from netproxy.socks.negotiation import Request
from netproxy.socks.replies import connect_reply
from netproxy.splice import SpliceEnd, close_after_writes, join


class Client(Protocol):
    """
    What a tunnel uses of its client's connection (a
    L{netproxy.socks.protocol.SocksProtocol}).
    """

    #: The client's transport.
    transport: Any
    #: The role's factory: C{reactor}, C{destination_rules}, C{local},
    #: C{connect_timeout}, C{metrics}.
    factory: Any
    #: Whether the proxy is shutting down.
    stopping: bool

    def established(self, address: str, bound: Any) -> None:
        """The tunnel is open, to C{address}, from the C{bound} address."""

    def moved(self, forwarded: int = 0, returned: int = 0) -> None:
        """Bytes went from the client to the destination, or back."""

    def refuse(self, code: int, reason: str) -> None:
        """Answer the request with reply C{code}, and close."""

    def close(self) -> None:
        """Close the client's connection after what was written."""


class ConnectTunnel:
    """
    The destination of one CONNECT request.

    :param client: the client's connection.
    :param request: the request.
    :ivar destination: the destination's end, once connected.
    """

    log = Logger()

    def __init__(self, client: Client, request: Request) -> None:
        self.client = client
        self.request = request
        self.destination: SpliceEnd | None = None
        self._connecting: Deferred[Any] | None = None
        self._closed = False

    def open(self) -> None:
        """
        Connect to the destination; the client is not read from meanwhile.
        """
        factory = self.client.factory
        self.client.transport.pauseProducing()
        self._started = factory.reactor.seconds()
        connector = Factory.forProtocol(partial(SpliceEnd, self))
        connector.noisy = False
        connecting = connect_checked(factory.reactor, factory.destination_rules, self.request.host, self.request.port, connector,
                                     factory.connect_timeout, factory.local)
        # It may have failed already (a blocked address): the callbacks then
        # run, and clear _connecting, at once.
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._not_connected)
        connecting.addErrback(self._bug)

    def _connected(self, destination: SpliceEnd) -> None:
        self._connecting = None
        if self._closed or self.client.stopping:
            # No new tunnel once shutting down: the drain would wait for it.
            refuse, self._closed = not self._closed, True
            destination.transport.loseConnection()
            if refuse:
                self.client.refuse(negotiation.GENERAL_FAILURE, "the proxy is shutting down")
            return
        factory = self.client.factory
        factory.metrics.connect_seconds.observe(factory.reactor.seconds() - self._started)
        self.destination = destination
        self.client.established(format_address(destination.transport.getPeer()), destination.transport.getHost())
        join(self.client.transport, destination.transport)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if not self._closed:
            self._closed = True
            self.client.refuse(*connect_reply(failure, self.request.destination))

    def _bug(self, failure: Failure) -> None:
        self.log.failure("CONNECT to {destination} failed", failure, destination=self.request.destination)
        self.client.transport.abortConnection()

    def client_data(self, data: bytes) -> None:
        """
        Bytes from the client, for the destination (once connected).
        """
        assert self.destination is not None
        self.client.moved(forwarded=len(data))
        self.destination.transport.write(data)

    def destination_data(self, data: bytes) -> None:
        """
        Bytes from the destination, for the client.
        """
        self.client.moved(returned=len(data))
        self.client.transport.write(data)

    def destination_lost(self) -> None:
        """
        The destination closed: close the client after what it sent.
        """
        if not self._closed:
            self._closed = True
            self.client.close()

    def close(self) -> None:
        """
        The client has gone: stop connecting, or close the destination
        after what was written to it.
        """
        self._closed = True
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        if self.destination is not None:
            close_after_writes(self.destination.transport)
