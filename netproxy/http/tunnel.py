# -*- test-case-name: tests.http.test_tunnel -*-
"""
CONNECT tunnels: after C{200 Connection established}, bytes go both ways
unchanged until either side closes, with back-pressure both ways
(L{netproxy.splice}).
"""

from functools import partial
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from netproxy.dialing import connect_error
from netproxy.errors import HTTPError
from netproxy.escaping import Logger
from netproxy.http.head import RequestHead
from netproxy.http.message import Target
from netproxy.http.parent_tunnel import connect_tunnel
from netproxy.splice import SpliceEnd, close_after_writes, join

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


class Tunnel:
    """
    A CONNECT tunnel for one client connection.

    :param client: the L{netproxy.http.proxy.ProxyProtocol}.
    :param target: the L{netproxy.http.message.Target} to connect to.
    :param head: the CONNECT request's L{netproxy.http.head.RequestHead}.
    :param started: when it was read, by the reactor's clock.
    :ivar sent: bytes sent to the client through the tunnel.
    """

    log = Logger()

    def __init__(self, client: Any, target: Target, head: RequestHead, started: float) -> None:
        self.client = client
        self.target = target
        self.head = head
        self.started = started
        self.sent = 0
        self.destination: SpliceEnd | None = None
        self._pending = b""
        self._connecting: "Deferred[Any] | None" = None
        self._closed = False

    def open(self, rest: bytes) -> None:
        """
        Connect to the destination; C{rest} (bytes the client sent after
        its CONNECT head) is sent on once connected.

        :raises HTTPError: 403 when the port is not allowed.
        """
        factory = self.client.factory
        if self.target.port not in factory.connect_ports:
            raise HTTPError(403, f"CONNECT to port {self.target.port} is not allowed")
        self._pending = rest
        self.client.transport.pauseProducing()
        connector = Factory.forProtocol(partial(SpliceEnd, self))
        connector.noisy = False
        self._connecting = connect_tunnel(factory, self.target, connector)
        self._connecting.addCallbacks(self._connected, self._not_connected)

    def _connected(self, destination: SpliceEnd) -> None:
        self._connecting = None
        if self._closed:
            destination.transport.loseConnection()
            return
        self.destination = destination
        self.log.info("{client} CONNECT {authority} established", client=self.client.peer,
                      authority=self.target.authority.decode("ascii"))
        self.client.transport.write(ESTABLISHED)
        if self._pending:
            destination.transport.write(self._pending)
            self._pending = b""
        join(self.client.transport, destination.transport)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if self._closed or failure.check(CancelledError):
            return
        error = failure.value if isinstance(failure.value, HTTPError) else None
        self.client.fail(error or connect_error(failure, self.target.authority.decode("ascii")))

    def destination_data(self, data: bytes) -> None:
        """
        Bytes from the destination, for the client.
        """
        self.sent += len(data)
        self.client.transport.write(data)

    def client_data(self, data: bytes) -> None:
        """
        Bytes from the client, for the destination.
        """
        if self.destination is None:
            self._pending += data
        else:
            self.destination.transport.write(data)

    def destination_lost(self) -> None:
        """
        The destination closed: close the client after what it sent.
        """
        self._finish()
        # close() unregisters the destination as the client's producer: a
        # transport that paused it would otherwise resume it instead of
        # closing once its buffer drains.
        self.client.close()

    def close(self) -> None:
        """
        The client has gone: close the destination.
        """
        self._finish()
        if self._connecting is not None:
            self._connecting.cancel()
        if self.destination is not None:
            close_after_writes(self.destination.transport)

    def _finish(self) -> None:
        # An established tunnel is one access log line, written when it
        # closes (as Squid does); one that failed was logged with its error.
        if self.destination is not None and not self._closed:
            self.client.log_access(self.head, 200, self.sent, self.started)
        self._closed = True
