# -*- test-case-name: tests.message.test_reverse,tests.integration.test_reverse -*-
"""
The reverse proxy role: one port takes both the setups of servers
registering themselves and the data messages of clients, which go
round-robin to the servers of the privacy policy they name.

The first message on a connection says what it is.  A setup connection
that the server closes right away (within C{setup_grace} seconds) leaves the
server registered; one that the server keeps open is its lifeline, and the
server is removed when it closes.  A registry shared with other processes
(L{netproxy.message.redis_registry}) answers a setup later: the connection
reads nothing more until it has.

Only hosts named by C{allow_servers} may register, and each server id
belongs to the host that registered it (L{ServerRegistry.register}); a
setup refused gets a type 3 error and its connection is closed, like any
bad message.  A setup over a Unix socket counts as coming from 127.0.0.1,
where its server's port is dialled.
"""
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from netproxy.acl import RuleSet, parse_rule
from netproxy.errors import BadRequest, FramingError, SetupRefused, host_not_allowed
from netproxy.escaping import Logger
from netproxy.message.codec import DEFAULT_MAX_SIZE, encode_message
from netproxy.message.fields import DATA, SETUP, Data, Setup, error_for, message_type, read_data, read_setup
from netproxy.message.forwarder import Forwarder, ForwardResult
from netproxy.message.registry import IServerRegistry, Server, asked, host_key
from netproxy.message.stream import MessageStreamFactory, MessageStreamProtocol

# Who may register servers unless told otherwise: this host only.
LOOPBACK = RuleSet([parse_rule("127.0.0.0/8"), parse_rule("::1")])


class ReverseProtocol(MessageStreamProtocol):
    """
    One connection to the reverse proxy: a server's registration or a
    client's data messages, answered one at a time, in order.
    """

    log = Logger()
    factory: "ReverseFactory"

    def connectionMade(self) -> None:
        super().connectionMade()
        # A forward, or a registration (self._registering), in flight.
        self.busy: Deferred[Any] | None = None
        self._registering: Deferred[Server] | None = None
        self.connection_lost = False
        self._draining = False
        # By server key: one connection re-sending a setup holds one entry.
        self.registrations: dict[str, Server] = {}
        self.lifeline = False
        self._grace: IDelayedCall | None = None

    def _next(self) -> None:
        # An answer that is ready at once (no server for the policy) calls
        # back into here; the loop already running takes the next message,
        # so pipelined messages do not nest one call per message.
        if self._draining:
            return
        self._draining = True
        try:
            while self.queue and self.busy is None and not self.closed:
                message = self.queue.popleft()
                try:
                    if isinstance(message, FramingError):
                        raise BadRequest(str(message))
                    kind = message_type(message)
                    if kind == SETUP:
                        self._setup(message)
                    elif kind == DATA:
                        self._data(message)
                    else:
                        raise BadRequest(f"message type {message['type']!r} is not sent to the reverse proxy")
                except BadRequest as error:
                    self.log.warn("bad message from {peer}: {reason}", peer=self.peer, reason=str(error))
                    self._refuse(f"bad message: {error}", message)
                except SetupRefused as error:
                    self.log.warn("refused setup from {peer}: {reason}", peer=self.peer, reason=error.detail)
                    self._refuse(str(error), message)
        finally:
            self._draining = False
        if self.busy is not None and self.queue:
            # Back-pressure: read no more while messages wait behind the one
            # in flight (at most one read's worth).  A client that waits for
            # each answer is never paused, which spares two changes to the
            # reactor's interest set per message.
            self.transport.pauseProducing()

    def _refuse(self, text: str, message: dict[str, Any] | FramingError) -> None:
        # Answer a type 3 error and close, reading nothing more.
        self.closed = True
        self.queue.clear()
        policy = None
        if isinstance(message, dict):
            policy = message.get("privPoliId", message.get("privPolyId"))
        self.transport.write(encode_message(error_for(text, policy, message)))
        self.transport.loseConnection()

    def _setup(self, message: dict[str, Any]) -> None:
        setup = read_setup(message)
        host = host_key(getattr(self.transport.getPeer(), "host", None) or "127.0.0.1")
        if self.factory.allow_servers.match(host) is None:
            raise host_not_allowed(host)
        # A shared registry answers later: nothing more is read meanwhile.
        self.transport.pauseProducing()
        registering = asked(self.factory.registry.register, setup.server_id, setup.policy, host, setup.listen_port)
        self.busy = self._registering = registering
        registering.addCallbacks(self._registered, self._not_registered, callbackArgs=(setup, host),
                                 errbackArgs=(message,))

    def _registered(self, server: Server, setup: Setup, host: str) -> None:
        self.busy = self._registering = None
        self.log.info(
            "Receiving setup message from server id {server_id} privacy policy {policy} port {port}",
            server_id=setup.server_id, policy=setup.policy, port=setup.listen_port, host=host,
        )
        self.registrations[server.key] = server
        if self.connection_lost:
            if self.lifeline:
                # The lifeline closed while this setup was being registered:
                # it goes with the lifeline's other servers, rather than be
                # held as a lifeline whose connection is gone (renewed for
                # ever with a shared registry).
                self._remove(server)
            # Otherwise the server closed the connection before it was
            # registered: it stays.
            return
        if self.lifeline:
            self.factory.registry.lifeline(server)
        # A registration connection may stay quiet for as long as the server lives.
        self.setTimeout(None)
        if self._grace is None and not self.lifeline:
            self._grace = self.factory.reactor.callLater(self.factory.setup_grace, self._kept_open)
        self._resume()

    def _not_registered(self, failure: Failure, message: dict[str, Any]) -> None:
        self.busy = self._registering = None
        if failure.check(SetupRefused):
            self.log.warn("refused setup from {peer}: {reason}", peer=self.peer, reason=failure.value.detail)
            self._refuse(str(failure.value), message)
            return
        self.log.failure("registering a server for {peer} failed", failure, peer=self.peer)
        self.closed = True
        if not self.connection_lost:
            self.transport.abortConnection()

    def _resume(self) -> None:
        if self.work_done():
            return
        self.transport.resumeProducing()
        self._next()

    def _kept_open(self) -> None:
        self._grace = None
        self.lifeline = True
        for server in self.registrations.values():
            self.factory.registry.lifeline(server)

    def _data(self, message: dict[str, Any]) -> None:
        data = read_data(message)
        self.log.info(
            "Received a data message from client {client_id} privacy policy {policy} payload: {payload}",
            client_id=data.client_id, policy=data.policy, payload=data.payload, peer=self.peer,
        )
        # The decoder's last message is the queue's last: when the queue is
        # empty, this message is the one last_raw holds, to pass on as it came.
        raw = None if self.queue else self.decoder.last_raw
        busy = Deferred.fromCoroutine(self.factory.forwarder.forward(message, data, raw))
        # It may have fired already (no server for the policy): its callbacks
        # then run, and clear self.busy, at once.
        self.busy = busy
        busy.addCallback(self._answer, data)
        busy.addErrback(self._failed)

    def _answer(self, result: ForwardResult, data: Data) -> None:
        self.busy = None
        raw, answer = result
        if raw is None:
            raw = encode_message(answer).rstrip(b"\n")
        else:
            self.log.info("Forwarding a data message to client id {client_id} payload: {payload}",
                          client_id=data.client_id, payload=answer.get("payload"))
        self.transport.write(raw + b"\n")
        if self.work_done():
            return
        self.resetTimeout()
        # Paused by _next if more came meanwhile; reading already otherwise.
        self.transport.resumeProducing()
        self._next()

    def working(self) -> bool:
        return self.busy is not None

    def _failed(self, failure: Failure) -> None:
        self.busy = None
        if not failure.check(CancelledError):
            self.log.failure("forwarding for {peer} failed", failure, peer=self.peer)
            self.transport.abortConnection()

    def timeoutConnection(self) -> None:
        if self.busy is not None:
            # A client waiting for its answer is not idle; the forward has
            # its own connect and answer timeouts.
            self.postpone_timeout()
            return
        self.closed = True
        super().timeoutConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.closed = True
        self.connection_lost = True
        # A registration in flight completes: the server then stays registered,
        # as one that closes its setup connection at once does.
        if self.busy is not None and self.busy is not self._registering:
            self.busy.cancel()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self.lifeline:
            for server in self.registrations.values():
                self._remove(server)

    def _remove(self, server: Server) -> None:
        removing = asked(self.factory.registry.remove, server)
        removing.addCallbacks(self._removed, self._not_removed, callbackArgs=(server,), errbackArgs=(server,))

    def _removed(self, removed: bool, server: Server) -> None:
        if removed:
            self.log.info("removed server id {server_id} of privacy policy {policy}: "
                          "its registration connection closed", server_id=server.server_id, policy=server.policy)

    def _not_removed(self, failure: Failure, server: Server) -> None:
        self.log.failure("removing server id {server_id} failed", failure, server_id=server.server_id)


class ReverseFactory(MessageStreamFactory):
    """
    Builds L{ReverseProtocol}s around one registry and forwarder.

    :param reactor: the clock for timeouts.
    :param registry: the servers registered (a L{ServerRegistry}, or one
        shared with other processes).
    :param forwarder: sends data messages to them.
    :param idle_timeout: seconds a client connection may stay quiet.
    :param setup_grace: seconds within which a server that closes its setup
        connection stays registered.
    :param max_size: the largest message accepted, in bytes.
    :param allow_servers: the hosts that may register servers (anything
        with C{match(host)}, such as a L{RuleSet}); loopback when L{None}.
    """

    protocol = ReverseProtocol
    # Required here: the setup grace period runs on it.
    reactor: IReactorTime

    def __init__(self, reactor: Any, registry: IServerRegistry, forwarder: Forwarder, idle_timeout: float = 30.0,
                 setup_grace: float = 1.0, max_size: int = DEFAULT_MAX_SIZE,
                 allow_servers: RuleSet | None = None) -> None:
        super().__init__(reactor, idle_timeout, max_size)
        self.registry = registry
        self.forwarder = forwarder
        self.setup_grace = setup_grace
        self.allow_servers = LOOPBACK if allow_servers is None else allow_servers
