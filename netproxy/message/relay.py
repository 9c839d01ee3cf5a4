# -*- test-case-name: tests.message.test_relay,tests.integration.test_relay -*-
"""
The relay role: forwards the text of each JSON request to the address the
request names, unless the blocklist forbids it, and relays the reply bytes
back as they arrive.

The wire texts (C{Error, not allowed address} and the like) are what the
relay's clients read and compare, byte for byte (the README lists them), and
carry no newline.  One client
connection carries requests one after another; each gets its own upstream
connection, which lives until the server closes it, the next request comes,
the client leaves, or nothing moves for C{idle_timeout} seconds.
"""

from functools import partial
from typing import Any, Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.acl import Rule
from netproxy.dialing import connect_checked, connect_failure_reason
from netproxy.errors import BadRequest, Blocked, FramingError
from netproxy.escaping import Logger
from netproxy.message.codec import DEFAULT_MAX_SIZE
from netproxy.message.relay_request import RelayRequest, parse_relay_request
from netproxy.message.stream import MessageStreamFactory, MessageStreamProtocol

NOT_ALLOWED = b"Error, not allowed address"


class Rules(TypingProtocol):
    """
    The relay's destination rules, such as L{netproxy.rules_file.RulesFile}.
    """

    def match(self, host: str, port: int | None = None) -> Rule | None:
        """
        :returns: the first rule blocking C{host:port}, or L{None}.
        """


def bad_request(reason: object) -> bytes:
    """
    :returns: the relay's reply to a request it cannot read.
    """
    return f"Error, bad request: {reason}".encode("utf-8")


def could_not_connect(destination: str, reason: str) -> bytes:
    """
    :returns: the relay's reply when the destination cannot be reached.
    """
    return f"Error, could not connect to {destination}: {reason}".encode("utf-8")


class _Upstream(Protocol):
    """
    The relay's connection to a destination: writes the message text once
    connected and hands every reply chunk to the client side.
    """

    transport: Any

    def __init__(self, relay: "RelayProtocol", request: RelayRequest) -> None:
        self.relay = relay
        self.request = request
        self.received = 0

    def connectionMade(self) -> None:
        if not self.relay.closed:
            self.transport.write(self.request.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.relay.upstream_data(self, data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.relay.upstream_lost(self)


class RelayProtocol(MessageStreamProtocol):
    """
    One client connection of the relay.

    Requests are handled strictly in order: while an upstream connection is
    being made the client is not read from, so a burst of requests cannot
    pile up in memory.
    """

    log = Logger()
    factory: "RelayFactory"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.upstream: _Upstream | None = None
        self.connecting: Deferred[_Upstream] | None = None

    def _next(self) -> None:
        while self.queue and self.connecting is None and not self.closed:
            item = self.queue.popleft()
            if isinstance(item, FramingError):
                self._refuse(bad_request(item), "malformed request from {peer}: {reason}", reason=str(item))
                return
            self._start(item)

    def _start(self, message: dict[str, Any]) -> None:
        self._close_upstream()
        try:
            request = parse_relay_request(message)
        except BadRequest as error:
            self._refuse(bad_request(error), "bad request from {peer}: {reason}", reason=str(error))
            return
        self.log.info(
            "received request from {peer} for {destination} ({size} bytes)",
            peer=self.peer,
            destination=request.destination,
            size=len(request.payload),
        )
        rule = self.factory.rules.match(request.host, request.port)
        if rule is not None:
            self._refuse(NOT_ALLOWED, "blocked request from {peer} to {destination} by rule {rule}",
                         destination=request.destination, rule=str(rule))
            return
        self.transport.pauseProducing()
        upstream_factory = Factory.forProtocol(partial(_Upstream, self, request))
        upstream_factory.noisy = False
        connecting = self.factory.connect(request.host, request.port, upstream_factory)
        # The Deferred may have fired already (a failed lookup, a blocked
        # address): its callbacks then run, and clear self.connecting, at once.
        self.connecting = connecting
        connecting.addCallbacks(self._connected, self._not_connected, callbackArgs=(request,), errbackArgs=(request,))
        connecting.addErrback(self._bug)

    def _connected(self, upstream: _Upstream, request: RelayRequest) -> None:
        self.connecting = None
        if self.closed:
            # The client left, or idled out, while we were connecting.
            upstream.transport.loseConnection()
            return
        self.upstream = upstream
        self.log.info(
            "forwarded {size} bytes from {peer} to {destination}",
            peer=self.peer,
            destination=request.destination,
            size=len(request.payload),
        )
        self.transport.registerProducer(upstream.transport, True)
        self.transport.resumeProducing()
        if self.peer_done and not self.queue:
            self._pass_on_end(upstream)
        self._next()

    def readConnectionLost(self) -> None:
        # The client has sent all it will: pass its FIN on to the destination,
        # as a TCP proxy does.  Most servers then answer and close, and a
        # server that treats the end of input as a disconnect ends the
        # exchange at once; the reply is relayed either way.
        super().readConnectionLost()
        if self.upstream is not None and not self.queue:
            self._pass_on_end(self.upstream)

    def _pass_on_end(self, upstream: _Upstream) -> None:
        half_close = getattr(upstream.transport, "loseWriteConnection", upstream.transport.loseConnection)
        half_close()

    def _not_connected(self, failure: Failure, request: RelayRequest) -> None:
        self.connecting = None
        if self.closed:
            return
        if failure.check(Blocked):
            self._refuse(NOT_ALLOWED, "blocked request from {peer} to {destination}: {reason}",
                         destination=request.destination, reason=failure.getErrorMessage())
            return
        reason = connect_failure_reason(failure)
        self.log.error("could not connect to {destination} for {peer}: {reason}",
                       destination=request.destination, peer=self.peer, reason=reason)
        self._refuse(could_not_connect(request.destination, reason), None)

    def _bug(self, failure: Failure) -> None:
        self.log.failure("relaying for {peer} failed", failure, peer=self.peer)
        self.transport.abortConnection()

    def _refuse(self, reply: bytes, event: str | None, **fields: object) -> None:
        if event is not None:
            self.log.warn(event, peer=self.peer, **fields)
        self.queue.clear()
        self.closed = True
        self.transport.write(reply)
        self.transport.loseConnection()

    def upstream_data(self, upstream: _Upstream, data: bytes) -> None:
        """
        Relay a chunk of the destination's reply, unchanged.
        """
        if upstream is self.upstream:
            self.resetTimeout()
            self.transport.write(data)

    def upstream_lost(self, upstream: _Upstream) -> None:
        """
        The destination's connection closed (by it, or by us).
        """
        self.log.info(
            "closed exchange {peer} <-> {destination}: {sent} bytes sent, {received} bytes received",
            peer=self.peer,
            destination=upstream.request.destination,
            sent=len(upstream.request.payload),
            received=upstream.received,
        )
        if upstream is self.upstream:
            self.upstream = None
            self.transport.unregisterProducer()
            self.work_done()

    def working(self) -> bool:
        return self.upstream is not None or self.connecting is not None

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            self.transport.unregisterProducer()
            upstream.transport.loseConnection()

    def timeoutConnection(self) -> None:
        self.closed = True
        self._close_upstream()
        super().timeoutConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        self._close_upstream()
        self.log.info("connection from {peer} closed", peer=self.peer)


class RelayFactory(MessageStreamFactory):
    """
    Builds L{RelayProtocol}s and opens their upstream connections.

    :param reactor: the reactor to connect with, and the clock for timeouts.
    :param rules: the destination L{Rules}, such as a
        L{netproxy.rules_file.RulesFile}.
    :param idle_timeout: seconds without traffic before an exchange and its
        client connection are closed.
    :param connect_timeout: seconds to wait for a destination to accept.
    :param max_size: the largest request accepted, in bytes.
    """

    protocol = RelayProtocol

    def __init__(self, reactor: Any, rules: Rules, idle_timeout: float = 30.0, connect_timeout: float = 10.0,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(reactor, idle_timeout, max_size)
        self.rules = rules
        self.connect_timeout = connect_timeout

    def connect(self, host: str, port: int, factory: Factory[_Upstream]) -> "Deferred[_Upstream]":
        """
        Connect to a destination named by address or host name; a name is
        resolved first and its address checked against the rules as well.

        :returns: a L{Deferred} firing with the connected protocol.
        """
        return connect_checked(self.reactor, self.rules, host, port, factory, self.connect_timeout)
