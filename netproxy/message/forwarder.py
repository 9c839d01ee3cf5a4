# -*- test-case-name: tests.message.test_forwarder -*-
"""
Forwarding one data message to a server of its privacy policy and reading
the answer, failing over to the next server when one does not answer.

Each message gets a new connection, closed once the answer is read: many
simple servers handle one connection at a time and would hang otherwise.

A message tries at most C{max_tries} servers, so the longest a client
waits for its answer is C{max_tries * (connect_timeout + answer_timeout)}
however many servers are registered and however they fail.
"""

from functools import lru_cache
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect_failure_reason, endpoint_for
from netproxy.errors import FramingError, NetproxyError, tries_exhausted
from netproxy.escaping import Logger
from netproxy.message.codec import MessageDecoder, wire_form
from netproxy.message.fields import Data, error_for
from netproxy.message.registry import IServerRegistry, Server, asked

# Servers one message is sent to at most, unless told otherwise.
DEFAULT_MAX_TRIES = 3

# A forward's outcome: the answer's bytes exactly as the server wrote them
# and the decoded answer; or None and the type 3 error for the client.
ForwardResult = tuple[bytes | None, dict[str, Any]]
# A server's answer: its bytes exactly as written, and the decoded object.
Answer = tuple[bytes, dict[str, Any]]


class ServerFailed(NetproxyError):
    """
    A server accepted a message but gave no usable answer.
    """


# What a server, or the network on the way to it, can do to a forward: refuse
# or drop the connection, fail to resolve or route (OSError covers the
# resolver's DNSLookupError), not answer in time, answer badly.  Anything else
# is a bug here, which must reach the log with its traceback rather than pass
# for a server that is down.
_SERVER_FAILURES = (ServerFailed, ConnectError, ConnectionClosed, DeferredTimeout, OSError)


class _ServerConnection(Protocol):
    """
    Writes one message and fires C{answer} with the raw bytes and the
    decoded object of the first JSON object that comes back, then closes
    the connection: closed first, so that whatever C{answer} sets off
    finds the exchange over.

    :ivar answer: fires once: with C{(raw, answer)}, or with L{ServerFailed}
        (a bad answer, or none), or L{DeferredTimeout} when C{clock} is given
        and no answer came within C{timeout} seconds of connecting.
    """

    transport: Any

    def __init__(self, request: bytes, max_size: int, answer: "Deferred[Answer] | None" = None,
                 clock: IReactorTime | None = None, timeout: float = 0.0) -> None:
        self.request = request
        self.decoder = MessageDecoder(max_size)
        self.answer: Deferred[Answer] = Deferred() if answer is None else answer
        self.clock = clock
        self.timeout = timeout
        self.timer: IDelayedCall | None = None
        self.done = False

    def connectionMade(self) -> None:
        self.transport.write(self.request)
        if self.clock is not None:
            self.timer = self.clock.callLater(self.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.done:
            return
        try:
            for message in self.decoder.feed(data):
                self.finish((self.decoder.last_raw, message))
                return
        except FramingError as error:
            self.finish(Failure(ServerFailed(f"malformed answer: {error}")))

    def _timed_out(self) -> None:
        self.timer = None
        self.finish(Failure(DeferredTimeout(self.timeout, "no answer")))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done:
            self.finish(Failure(ServerFailed("closed the connection without answering")))

    def finish(self, result: "Answer | Failure | None" = None) -> None:
        """
        End the exchange: stop the timer, close the connection, and fire
        C{answer} with C{result} unless it has fired (or been cancelled:
        C{None}).
        """
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport.loseConnection()
        if result is None or self.answer.called:
            return
        if isinstance(result, Failure):
            self.answer.errback(result)
        else:
            self.answer.callback(result)


class _Exchange(ClientFactory):
    """
    One message's exchange with one server, from the connection attempt to
    the answer, as one L{Deferred}: the reactor's own connector for an IP
    address (what L{TCP4ClientEndpoint} would do, without its wrappers and
    their Deferreds), an endpoint for a name.

    Cancelling the Deferred (the client left) stops the connection attempt
    or closes the connection, and fails it with L{CancelledError}.
    """

    noisy = False

    def __init__(self, reactor: Any, request: bytes, max_size: int, answer_timeout: float) -> None:
        self.reactor = reactor
        self.request = request
        self.max_size = max_size
        self.answer_timeout = answer_timeout
        self.answer: Deferred[Answer] = Deferred(self._cancel)
        self.connecting: IConnector | Deferred[Any] | None = None
        self.connection: _ServerConnection | None = None
        self.cancelled = False

    def start(self, host: str, port: int, connect_timeout: float) -> "Deferred[Answer]":
        """
        :returns: L{answer}, which fails with what the connection attempt
            failed with (such as L{ConnectionRefusedError}) if it does.
        """
        if _is_address(host):
            self.connecting = self.reactor.connectTCP(host, port, self, timeout=connect_timeout)
        else:
            connecting = endpoint_for(self.reactor, host, port, connect_timeout).connect(self)
            self.connecting = connecting
            connecting.addErrback(self._connect_failed)
        return self.answer

    def buildProtocol(self, addr: IAddress | None) -> _ServerConnection:
        self.connecting = None
        self.connection = _ServerConnection(self.request, self.max_size, self.answer, self.reactor,
                                            self.answer_timeout)
        return self.connection

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._connect_failed(reason)

    def _connect_failed(self, reason: Failure) -> None:
        self.connecting = None
        # A cancelled attempt fails too (at once, with the reactor's
        # UserError or the endpoint's ConnectingCancelledError): that says
        # nothing about the server, and the answer fails with CancelledError.
        if not (self.cancelled or self.answer.called):
            self.answer.errback(reason)

    def _cancel(self, answer: "Deferred[Answer]") -> None:
        self.cancelled = True
        connecting, self.connecting = self.connecting, None
        if isinstance(connecting, Deferred):
            connecting.cancel()
        elif connecting is not None:
            connecting.stopConnecting()
        if self.connection is not None:
            self.connection.finish()


# ip_address() parses in Python, and the registry's few hosts come back for
# every message: the answer is remembered.
@lru_cache(maxsize=1024)
def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


class Forwarder:
    """
    Sends data messages to the servers a registry (L{IServerRegistry}) offers.

    :param reactor: to connect with, and the clock for timeouts.
    :param registry: the servers to send to.
    :param connect_timeout: seconds for a server to accept the connection.
    :param answer_timeout: seconds for a server to answer once connected.
    :param max_size: the largest answer accepted, in bytes.
    :param max_tries: the most servers one message is sent to.
    """

    log = Logger()

    def __init__(self, reactor: Any, registry: IServerRegistry, connect_timeout: float, answer_timeout: float,
                 max_size: int, max_tries: int = DEFAULT_MAX_TRIES) -> None:
        self.reactor = reactor
        self.registry = registry
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.max_size = max_size
        self.max_tries = max_tries
        # For the metrics: messages passed on to the next server after one
        # failed, and messages no server answered.
        self.failovers = 0
        self.unanswered = 0

    async def forward(self, message: dict[str, Any], data: Data, sent: bytes | None = None) -> ForwardResult:
        """
        Forward a data message, with every field the client sent.

        :param message: the client's message, as decoded.
        :param data: the L{Data} read from it.
        :param sent: the bytes C{message} was decoded from, passed on as
            they came when they are one line (L{wire_form}); L{None} to
            encode it.
        :returns: C{(raw, answer)}: the answer's bytes exactly as the server
            wrote them and the decoded answer; or C{(None, error)} with the
            type 3 error for the client when no server could answer.
        """
        candidates = await asked(self.registry.candidates, data.policy)
        if not candidates:
            self.unanswered += 1
            self.log.warn("no server registered for privacy policy {policy}", policy=data.policy)
            return None, error_for(f"no server registered for privacy policy {data.policy}", data.policy, message)
        request = wire_form(message, sent)
        for attempt, server in enumerate(candidates[:self.max_tries]):
            if attempt:
                self.failovers += 1
            self.log.info("Forwarding a data message to server id {server_id} payload: {payload}",
                          server_id=server.server_id, payload=data.payload, address=server.address)
            try:
                raw, answer = await self._exchange(server, request)
            except _SERVER_FAILURES:
                reason = connect_failure_reason(Failure())
                self.registry.mark_down(server)
                self.log.warn("server id {server_id} at {address} failed: {reason}; marked down",
                              server_id=server.server_id, address=server.address, reason=reason)
                continue
            self.registry.mark_up(server)
            self.log.info("Received a data message from server id {server_id} payload: {payload}",
                          server_id=server.server_id, payload=answer.get("payload"))
            return raw, answer
        self.unanswered += 1
        if len(candidates) > self.max_tries:
            self.log.error("no answer from {tried} of the {count} servers of privacy policy {policy} tried: "
                           "giving up (--max-tries {tried})", tried=self.max_tries, count=len(candidates),
                           policy=data.policy)
            return None, error_for(tries_exhausted(self.max_tries, data.policy), data.policy, message)
        self.log.error("all servers of privacy policy {policy} are down", policy=data.policy)
        return None, error_for(f"all servers of privacy policy {data.policy} are down", data.policy, message)

    def _exchange(self, server: Server, request: bytes) -> "Deferred[Answer]":
        # A Deferred, not a coroutine: forward() awaits it once per server.
        exchange = _Exchange(self.reactor, request, self.max_size, self.answer_timeout)
        return exchange.start(server.host, server.port, self.connect_timeout)
