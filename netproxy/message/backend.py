# -*- test-case-name: tests.message.test_backend -*-
"""
The backend server role: answers each data message with the SHA-1 of its
payload, and keeps itself registered with a reverse proxy.

It listens first and registers only once listening, over a connection it
keeps open; L{ClientService} makes it again, with back-off, whenever it is
lost, so a restarted reverse proxy relearns its servers by itself.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.connections import TrackedProtocol, TrackingFactory, format_address
from netproxy.errors import BadRequest, FramingError
from netproxy.escaping import Logger
from netproxy.message.codec import DEFAULT_MAX_SIZE, MessageDecoder, encode_message
from netproxy.message.fields import DATA, SETUP, ServerId, ack_for, error_for, message_type, read_data

# A restarted reverse proxy should see its servers again within a few seconds.
RETRY_POLICY = backoffPolicy(initialDelay=0.25, maxDelay=2.0, factor=2.0)


class BackendProtocol(TrackedProtocol):
    """
    Answers every data message on the connection with a type 2 ack, until
    the peer closes it.
    """

    log = Logger()
    factory: "BackendFactory"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.decoder = MessageDecoder(self.factory.max_size)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        try:
            for message in self.decoder.feed(data):
                self._answer(message)
        except (FramingError, BadRequest) as error:
            self.log.warn("bad message from {peer}: {reason}", peer=self.peer, reason=str(error))
            self.transport.write(encode_message(error_for(f"bad message: {error}")))
            self.transport.loseConnection()

    def _answer(self, message: dict[str, Any]) -> None:
        if message_type(message) != DATA:
            raise BadRequest(f"message type {message['type']!r} is not sent to a server")
        data = read_data(message)
        self.log.info("Received a message from client {client_id} payload: {payload}",
                      client_id=data.client_id, payload=data.payload, peer=self.peer)
        ack = ack_for(message, self.factory.server_id)
        self.log.info("Sending a response to the client {client_id} payload: {payload}",
                      client_id=data.client_id, payload=ack["payload"])
        self.transport.write(encode_message(ack))


class BackendFactory(TrackingFactory):
    """
    Builds L{BackendProtocol}s.

    :param reactor: the clock for idle timeouts.
    :param server_id: this server's id, as put in its acks.
    :param idle_timeout: seconds a peer may stay quiet.
    :param max_size: the largest message accepted, in bytes.
    """

    protocol = BackendProtocol

    def __init__(self, reactor: Any, server_id: ServerId, idle_timeout: float = 30.0,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(reactor, idle_timeout)
        self.server_id = server_id
        self.max_size = max_size


class RegistrationProtocol(Protocol):
    """
    Sends the setup message and then keeps the connection open, as the
    server's lifeline with the reverse proxy.  The reverse proxy answers
    only to refuse the setup (a type 3 error, then it closes): that is
    logged, and L{ClientService} registers again with back-off.
    """

    log = Logger()

    transport: Any

    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.decoder = MessageDecoder(DEFAULT_MAX_SIZE)

    def dataReceived(self, data: bytes) -> None:
        try:
            for message in self.decoder.feed(data):
                self.log.error("the reverse proxy refused the registration: {error}",
                               error=str(message.get("error", message))[:500])
        except FramingError as error:
            self.log.warn("the reverse proxy sent something unexpected: {reason}", reason=str(error))
            self.transport.loseConnection()

    def connectionMade(self) -> None:
        self.transport.write(encode_message(self.setup))
        self.log.info("registered with the reverse proxy at {address}",
                      address=format_address(self.transport.getPeer()))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # ClientService makes a new one unless the server is stopping.
        self.log.info("registration connection to the reverse proxy closed")


def setup_message(server_id: ServerId, policy: str, port: int) -> dict[str, Any]:
    """
    :returns: the type 1 message registering this server.
    """
    return {"type": SETUP, "id": server_id, "privPolyId": policy, "listenport": port}


class BackendService(Service):
    """
    Listens for data messages, then registers with the reverse proxy.

    :param reactor: the reactor.
    :param listen: the endpoint to listen on.
    :param registrar: the endpoint of the reverse proxy.
    :param server_id: this server's id.
    :param policy: the privacy policy it serves.
    :param revproc: how to name the reverse proxy in the log (its port).
    :param idle_timeout: seconds a peer may stay quiet.
    :param max_size: the largest message accepted, in bytes.
    :param retry_policy: seconds to wait before registering again, given
        the number of failed attempts.
    :param shutdown_timeout: seconds connections may take to finish on stop.
    """

    log = Logger()

    def __init__(self, reactor: Any, listen: IStreamServerEndpoint, registrar: IStreamClientEndpoint,
                 server_id: ServerId, policy: str, revproc: int, idle_timeout: float = 30.0,
                 max_size: int = DEFAULT_MAX_SIZE, retry_policy: Callable[[int], float] = RETRY_POLICY,
                 shutdown_timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.listen = listen
        self.registrar = registrar
        self.server_id = server_id
        self.policy = policy
        self.revproc = revproc
        self.factory = BackendFactory(reactor, server_id, idle_timeout, max_size)
        self.retry_policy = retry_policy
        self.shutdown_timeout = shutdown_timeout
        self.port: IListeningPort | None = None
        self.registration: ClientService | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._start_listening()

    def _start_listening(self) -> Deferred[IListeningPort]:
        self.log.info("Server running with id {server_id}", server_id=self.server_id)
        self.log.info("Server serving privacy policy {policy}", policy=self.policy)
        # Listen here, as strports services do, so a busy port stops start-up.
        failures: list[Failure] = []
        self._listening = listening = self.listen.listen(self.factory)
        listening.addCallbacks(self._listened, failures.append)
        if failures:
            failures[0].raiseException()
        return listening

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self.log.info("Listening on port {port}", port=_port_number(port))
        return port

    def startService(self) -> None:
        listening = self._listening
        if listening is None:
            # Added to a parent that was already running: nobody called
            # privilegedStartService, so listen now, as strports services do.
            listening = self._start_listening()
        super().startService()
        listening.addCallback(self._register)

    def _register(self, port: IListeningPort) -> None:
        self.log.info("Connecting to the reverse proxy on port {revproc}", revproc=self.revproc)
        setup = setup_message(self.server_id, self.policy, _port_number(port))
        factory = Factory.forProtocol(partial(RegistrationProtocol, setup))
        self.registration = ClientService(self.registrar, factory, retryPolicy=self.retry_policy, clock=self.reactor)
        self.registration.startService()

    def stopService(self) -> Deferred[list[Any]]:
        super().stopService()
        stopping: list[Deferred[Any] | None] = []
        if self.registration is not None:
            stopping.append(self.registration.stopService())
        if self.port is not None:
            stopping.append(self.port.stopListening())
        stopping.append(self.factory.drain(self.reactor, self.shutdown_timeout))
        return gatherResults([d for d in stopping if d is not None])


def _port_number(port: IListeningPort) -> int:
    # The setup message names a TCP port: nothing else can be registered.
    address = port.getHost()
    assert isinstance(address, (IPv4Address, IPv6Address)), address
    return address.port
