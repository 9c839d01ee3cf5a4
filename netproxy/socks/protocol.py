# -*- test-case-name: tests.socks.test_protocol -*-
"""
The SOCKS role's client connections: the negotiation (RFC 1928, with the
username/password login of RFC 1929 when C{--auth-file} is given), then a
tunnel to the destination (L{netproxy.splice}) until either side closes.

Clients are admitted by source address (loopback only by default).  A
destination is refused (reply 2) when a C{--block} rule matches its name or
the address it resolves to, or when that address is on this host or its
link (unless C{--allow-local}): the rules see the address actually
connected to.  Only CONNECT is served; BIND and UDP ASSOCIATE get reply 7.

A connection is read from in steps: the greeting, the login, the request;
while a password is checked or the destination connected, the client is
not read from (what it sent ahead waits, bounded by one read).  The whole
negotiation must end within C{handshake_timeout} seconds, whatever the
client trickles in; an established tunnel is closed after
C{tunnel_idle_timeout} seconds with no byte either way.
"""

from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure

from netproxy.connections import TrackedProtocol, TrackingFactory, format_address
from netproxy.dialing import connect_checked
from netproxy.escaping import Logger
from netproxy.http.login_throttle import client_key
from netproxy.socks import negotiation
from netproxy.socks.access_log import SocksAccessLog
from netproxy.socks.metrics import SocksMetrics
from netproxy.socks.negotiation import NegotiationError, Request
from netproxy.socks.replies import connect_reply
from netproxy.splice import SpliceEnd, close_after_writes, join
from netproxy.this_host import LocalDestinations

if TYPE_CHECKING:
    from netproxy.http.auth import ProxyAuth, Verdict

# The steps of a connection, in order.
GREETING, LOGIN, CHECKING, REQUEST, CONNECTING, TUNNEL, DONE = (
    "greeting", "login", "checking", "request", "connecting", "tunnel", "done")


class SocksProtocol(TrackedProtocol):
    """
    One client connection of the SOCKS role.

    :ivar user: who logged in, or L{None}.
    :ivar received: tunnel bytes from the client, passed to the destination.
    :ivar sent: tunnel bytes from the destination, passed to the client.
    """

    log = Logger()
    factory: "SocksFactory"
    user: str | None = None
    step = GREETING

    def connectionMade(self) -> None:
        super().connectionMade()
        self._buffer = b""
        self.request: Request | None = None
        self.destination: SpliceEnd | None = None
        self.address: str | None = None
        self.received = self.sent = 0
        self.started = 0.0
        self.stopping = False
        self._connecting: Deferred[Any] | None = None
        self._deadline: IDelayedCall | None = None
        host = self.client_host
        if host is None or self.factory.allow.match(host) is None:
            self.log.warn("{peer}: client {host} is not allowed to use this proxy", peer=self.peer, host=host)
            self.step = DONE
            self.transport.loseConnection()
            return
        self._deadline = self.factory.reactor.callLater(self.factory.handshake_timeout, self._too_slow)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            # Tunnels carry interactive protocols (SSH): no Nagle delay.
            try:
                set_no_delay(True)
            except OSError:
                pass

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()  # type: ignore[no-untyped-call]
        if self.step == TUNNEL:
            assert self.destination is not None
            self.received += len(data)
            self.factory.metrics.received_bytes += len(data)
            self.destination.transport.write(data)
        elif self.step != DONE:
            # While checking or connecting the client is paused: this is at
            # most what one read brought.
            self._buffer += data
            if self.step in (GREETING, LOGIN, REQUEST):
                self._negotiate()

    def _negotiate(self) -> None:
        try:
            while self._buffer and self.step in (GREETING, LOGIN, REQUEST):
                step = self.step
                if step == GREETING:
                    found = negotiation.read_greeting(self._buffer)
                    if found is None:
                        return
                    methods, size = found
                    self._buffer = self._buffer[size:]
                    self._choose_method(methods)
                elif step == LOGIN:
                    login = negotiation.read_login(self._buffer)
                    if login is None:
                        return
                    user, password, size = login
                    self._buffer = self._buffer[size:]
                    self._check_login(user, password)
                elif step == REQUEST:
                    read = negotiation.read_request(self._buffer)
                    if read is None:
                        return
                    request, size = read
                    self._buffer = self._buffer[size:]
                    self._request(request)
        except NegotiationError as error:
            self._bad_input(error)

    def _choose_method(self, methods: frozenset[int]) -> None:
        wanted = negotiation.NO_AUTHENTICATION if self.factory.auth is None else negotiation.USERNAME_PASSWORD
        if wanted not in methods:
            self.transport.write(negotiation.method_reply(negotiation.NO_ACCEPTABLE_METHODS))
            self._close(f"no acceptable authentication method offered (methods {sorted(methods)}, "
                        f"{'username/password' if wanted else 'none'} required)")
            return
        self.transport.write(negotiation.method_reply(wanted))
        self.step = LOGIN if wanted == negotiation.USERNAME_PASSWORD else REQUEST

    def _check_login(self, user: bytes, password: bytes) -> None:
        auth = self.factory.auth
        assert auth is not None
        self.step = CHECKING
        self.transport.pauseProducing()
        transport = self.transport
        checking = auth.check(user, password, client_key(transport.getPeer()),
                              lambda: transport.connected and not transport.disconnecting)
        checking.addCallback(self._checked)
        checking.addErrback(self._check_broken)

    def _checked(self, verdict: "Verdict") -> None:
        if self.step != CHECKING:
            return  # the client left
        self.factory.metrics.login(verdict.user is not None)
        if verdict.user is None:
            self.transport.write(negotiation.login_reply(False))
            # The throttle warned once for a client that failed too often:
            # a line per try would let it flood the log.
            self._close(verdict.problem if verdict.retry_after is None else None)
            return
        self.user = verdict.user
        self.transport.write(negotiation.login_reply(True))
        self.step = REQUEST
        self.transport.resumeProducing()
        self._negotiate()

    def _check_broken(self, failure: Failure) -> None:
        self.log.failure("checking the login of {peer} failed", failure, peer=self.peer)
        if self.step == CHECKING:
            self.transport.write(negotiation.login_reply(False))
            self._close(None)

    def _request(self, request: Request) -> None:
        self._cancel_deadline()
        self.request = request
        self.started = self.factory.reactor.seconds()
        if request.command != negotiation.CONNECT:
            name = negotiation.COMMAND_NAMES.get(request.command, f"command {request.command}")
            self._refuse(negotiation.COMMAND_NOT_SUPPORTED, f"{name} is not supported")
            return
        factory = self.factory
        if request.address_type == negotiation.DOMAIN_NAME:
            # The resolved address is checked when connecting; the name here.
            rule = factory.rules.match(request.host, request.port)
            if rule is not None:
                self._refuse(negotiation.NOT_ALLOWED, f"destination {request.destination} is blocked by rule {rule}")
                return
        self.step = CONNECTING
        self.transport.pauseProducing()
        connector = Factory.forProtocol(partial(SpliceEnd, self))
        connector.noisy = False
        connecting = connect_checked(factory.reactor, factory.rules, request.host, request.port, connector,
                                     factory.connect_timeout, factory.local)
        # It may have failed already (a blocked address): the callbacks then
        # run, and clear _connecting, at once.
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._not_connected)
        connecting.addErrback(self._bug)

    def _connected(self, destination: SpliceEnd) -> None:
        self._connecting = None
        if self.step != CONNECTING or self.stopping:
            destination.transport.loseConnection()
            if self.step == CONNECTING:
                # No new tunnel once shutting down: the drain would wait for it.
                self._refuse(negotiation.GENERAL_FAILURE, "the proxy is shutting down")
            return
        assert self.request is not None
        factory = self.factory
        factory.metrics.connect_seconds.observe(factory.reactor.seconds() - self.started)
        self.destination = destination
        self.address = format_address(destination.transport.getPeer())
        bound = destination.transport.getHost()
        self.step = TUNNEL
        factory.tunnels += 1
        self.log.info("{peer} CONNECT {destination} established ({address})", peer=self.peer,
                      destination=self.request.destination, address=self.address)
        self.transport.write(negotiation.reply(negotiation.SUCCEEDED, bound.host, bound.port))
        if self._buffer:
            # What the client sent before the reply (optimistic data).
            self.received += len(self._buffer)
            factory.metrics.received_bytes += len(self._buffer)
            destination.transport.write(self._buffer)
            self._buffer = b""
        join(self.transport, destination.transport)
        self.setTimeout(factory.tunnel_idle_timeout)  # type: ignore[no-untyped-call]

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if self.step != CONNECTING:
            return
        assert self.request is not None
        code, reason = connect_reply(failure, self.request.destination)
        self._refuse(code, reason)

    def _bug(self, failure: Failure) -> None:
        self.log.failure("SOCKS request of {peer} failed", failure, peer=self.peer)
        self.transport.abortConnection()

    def destination_data(self, data: bytes) -> None:
        """
        Bytes from the destination, for the client.
        """
        self.resetTimeout()  # type: ignore[no-untyped-call]
        self.sent += len(data)
        self.factory.metrics.sent_bytes += len(data)
        self.transport.write(data)

    def destination_lost(self) -> None:
        """
        The destination closed: close the client after what it sent.
        """
        if self.step == TUNNEL:
            self._finish()
            self.close()

    def _finish(self) -> None:
        # A tunnel is one access line, written when it closes (as Squid does).
        self.step = DONE
        self.factory.tunnels -= 1
        self._report(negotiation.SUCCEEDED)

    def _report(self, code: int) -> None:
        request = self.request
        assert request is not None
        command = negotiation.COMMAND_NAMES.get(request.command, "OTHER")
        factory = self.factory
        factory.metrics.finished(command, code)
        factory.access_log.finished(self.client_host or "-", self.user, command, request.destination, self.address,
                                    code, self.received, self.sent, factory.reactor.seconds() - self.started)

    def _refuse(self, code: int, reason: str) -> None:
        """
        Answer the request with C{code}, log why, and close.
        """
        self.transport.write(negotiation.reply(code))
        self._report(code)
        # An unreachable destination is an error (STYLE.md), a refused one
        # the client's doing.
        level = self.log.warn if code in (negotiation.NOT_ALLOWED, negotiation.COMMAND_NOT_SUPPORTED) else \
            self.log.error
        level("{peer}: reply {code}: {reason}", peer=self.peer, code=code, reason=reason)
        self._close(None)

    def _bad_input(self, error: NegotiationError) -> None:
        if self.step == LOGIN:
            self.transport.write(negotiation.login_reply(False))
        elif self.step == REQUEST and error.reply is not None:
            self.transport.write(negotiation.reply(error.reply))
            self.factory.metrics.finished("-", error.reply)
        self._close(f"bad SOCKS5 {self.step}: {error}")

    def _close(self, problem: str | None) -> None:
        """
        Close after what was written; C{problem}, when given, is logged as
        the client's fault.
        """
        if problem is not None:
            self.log.warn("{peer}: {problem}", peer=self.peer, problem=problem)
        self.step = DONE
        self._cancel_deadline()
        self._buffer = b""
        self.transport.resumeProducing()
        self.transport.loseConnection()

    def _too_slow(self) -> None:
        self._deadline = None
        self._close(f"negotiation not finished within {self.factory.handshake_timeout:g} seconds")

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def timeoutConnection(self) -> None:
        if self.step in (CHECKING, CONNECTING):
            # Waiting on the proxy, not the client: those have limits of
            # their own (the login throttle, the connect timeout).
            self.postpone_timeout()
            return
        super().timeoutConnection()

    def close_when_idle(self) -> None:
        # A tunnel stays until the shutdown deadline: nothing says when it
        # is idle.  A negotiation under way is cut.
        self.stopping = True
        if self.step not in (TUNNEL, CONNECTING):
            self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._cancel_deadline()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            self.step = DONE
            connecting.cancel()
        if self.step == TUNNEL:
            self._finish()
            assert self.destination is not None
            close_after_writes(self.destination.transport)
        self.step = DONE


class SocksFactory(TrackingFactory):
    """
    The SOCKS role's shared state: who may use it, where they may go, and
    its timeouts.

    :param reactor: the reactor to connect with, and the clock.
    :param allow: client addresses admitted (anything with C{match(host)}).
    :param rules: destinations refused (anything with C{match(host, port)}).
    :param connect_timeout: seconds a destination may take to be resolved
        and accept.
    :param handshake_timeout: seconds a client may take from connecting to
        the end of its request.
    :param tunnel_idle_timeout: seconds a tunnel may carry nothing either way.
    :param idle_timeout: seconds a negotiating client may stay quiet.
    :ivar tunnels: the tunnels open now.
    """

    protocol = SocksProtocol
    reactor: Any
    #: The L{netproxy.http.auth.ProxyAuth} clients must log in to, or L{None}.
    auth: "ProxyAuth | None" = None
    #: The L{LocalDestinations} refused, or L{None} to allow them
    #: (C{--allow-local}).
    local: LocalDestinations | None = None

    def __init__(self, reactor: Any, allow: Any, rules: Any, connect_timeout: float = 10.0,
                 handshake_timeout: float = 30.0, tunnel_idle_timeout: float = 900.0,
                 idle_timeout: float = 30.0) -> None:
        super().__init__(reactor, idle_timeout)
        self.allow = allow
        self.rules = rules
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.tunnel_idle_timeout = tunnel_idle_timeout
        self.tunnels = 0
        self.access_log = SocksAccessLog()
        self.metrics = SocksMetrics(self)

