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

from functools import partial
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectingCancelledError, ConnectionClosed
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect_failure_reason, endpoint_for
from netproxy.errors import FramingError, NetproxyError, tries_exhausted
from netproxy.escaping import Logger
from netproxy.message.codec import MessageDecoder, encode_message
from netproxy.message.fields import Data, error_for
from netproxy.message.registry import IServerRegistry, Server, asked

# Servers one message is sent to at most, unless told otherwise.
DEFAULT_MAX_TRIES = 3

# A forward's outcome: the answer's bytes exactly as the server wrote them
# and the decoded answer; or None and the type 3 error for the client.
ForwardResult = tuple[bytes | None, dict[str, Any]]


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
    decoded object of the first JSON object that comes back.
    """

    transport: Any

    def __init__(self, request: bytes, max_size: int) -> None:
        self.request = request
        self.decoder = MessageDecoder(max_size)
        self.answer: Deferred[tuple[bytes, dict[str, Any]]] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if self.answer.called:
            return
        try:
            for message in self.decoder.feed(data):
                self.answer.callback((self.decoder.last_raw, message))
                return
        except FramingError as error:
            self.answer.errback(ServerFailed(f"malformed answer: {error}"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.answer.called:
            self.answer.errback(ServerFailed("closed the connection without answering"))


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

    async def forward(self, message: dict[str, Any], data: Data) -> ForwardResult:
        """
        Forward a data message, with every field the client sent.

        :param message: the client's message, as decoded.
        :param data: the L{Data} read from it.
        :returns: C{(raw, answer)}: the answer's bytes exactly as the server
            wrote them and the decoded answer; or C{(None, error)} with the
            type 3 error for the client when no server could answer.
        """
        candidates = await asked(self.registry.candidates, data.policy)
        if not candidates:
            self.unanswered += 1
            self.log.warn("no server registered for privacy policy {policy}", policy=data.policy)
            return None, error_for(f"no server registered for privacy policy {data.policy}", data.policy, message)
        request = encode_message(message)
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

    async def _exchange(self, server: Server, request: bytes) -> tuple[bytes, dict[str, Any]]:
        endpoint = endpoint_for(self.reactor, server.host, server.port, self.connect_timeout)
        factory = Factory.forProtocol(partial(_ServerConnection, request, self.max_size))
        factory.noisy = False
        try:
            connection = await endpoint.connect(factory)
        except ConnectingCancelledError:
            # Only our own cancellation (the client left) stops an attempt; it
            # says nothing about the server, so it must not fail over.
            raise CancelledError()
        try:
            return await connection.answer.addTimeout(self.answer_timeout, self.reactor)
        finally:
            connection.transport.loseConnection()
