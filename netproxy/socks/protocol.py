# -*- test-case-name: tests.socks.test_protocol -*-
"""
The SOCKS role's client connections: the negotiation (RFC 1928, with the
username/password login of RFC 1929 when C{--auth-file} is given), then
the relay the request asked for, until either side closes: a CONNECT's
tunnel (L{netproxy.socks.connect}) or a UDP association
(L{netproxy.socks.udp}).  BIND gets reply 7.

Clients are admitted by source address (loopback only by default).  A
destination is refused (reply 2) when a C{--block} rule matches its name or
the address it resolves to, or when that address is on this host or its
link (unless C{--allow-local}): the rules see the address actually
connected to.

A connection is read from in steps: the greeting, the login, the request;
while a password is checked or the destination connected, the client is
not read from (what it sent ahead waits, bounded by one read).  The whole
negotiation must end within C{handshake_timeout} seconds, whatever the
client trickles in; an open relay is closed after C{tunnel_idle_timeout}
seconds with no byte either way.
"""

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from netproxy.connections import TrackedProtocol, TrackingFactory
from netproxy.escaping import Logger
from netproxy.http.login_throttle import client_key
from netproxy.http.loops import Listening, LoopGuard
from netproxy.socks import negotiation
from netproxy.socks.access_log import SocksAccessLog
from netproxy.socks.connect import ConnectTunnel
from netproxy.socks.metrics import SocksMetrics
from netproxy.socks.negotiation import NegotiationError, Request
from netproxy.socks.udp import UDPAssociation
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
    :ivar relay: the request's tunnel or UDP association, once made.
    :ivar received: bytes from the client, passed to destinations.
    :ivar sent: bytes from destinations, passed to the client.
    """

    log = Logger()
    factory: "SocksFactory"
    user: str | None = None
    step = GREETING

    def connectionMade(self) -> None:
        super().connectionMade()
        self._buffer = b""
        self.request: Request | None = None
        self.relay: ConnectTunnel | UDPAssociation | None = None
        self.address: str | None = None
        self.received = self.sent = 0
        self.started = 0.0
        self.stopping = False
        self._deadline: IDelayedCall | None = None
        host = self.client_host
        if host is None or self.factory.allow.match(host) is None:
            self.log.warn("{peer}: client {host} is not allowed to use this proxy", peer=self.peer, host=host)
            self.step = DONE
            self.transport.loseConnection()
            return
        self.factory.listening.accepted(self.transport.getHost())
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
            assert self.relay is not None
            self.relay.client_data(data)
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
        factory = self.factory
        if request.command == negotiation.UDP_ASSOCIATE and factory.udp:
            self.step = CONNECTING
            self.relay = UDPAssociation(self, request)
            self.relay.open()
            return
        if request.command != negotiation.CONNECT:
            name = negotiation.COMMAND_NAMES.get(request.command, f"command {request.command}")
            self._refuse(negotiation.COMMAND_NOT_SUPPORTED, f"{name} is not supported")
            return
        if request.address_type == negotiation.DOMAIN_NAME:
            # The resolved address is checked when connecting; the name here.
            rule = factory.rules.match(request.host, request.port)
            if rule is not None:
                self._refuse(negotiation.NOT_ALLOWED, f"destination {request.destination} is blocked by rule {rule}")
                return
        self.step = CONNECTING
        self.relay = ConnectTunnel(self, request)
        self.relay.open()

    def established(self, address: str, bound: Any) -> None:
        """
        The relay is open: to C{address} (a tunnel's destination, or a UDP
        association's own port), from C{bound} (the address the client is
        told).
        """
        if self.step != CONNECTING:
            return
        assert self.request is not None
        self.address = address
        self.step = TUNNEL
        self.factory.tunnels += 1
        self.log.info("{peer} {command} {destination} established ({address})", peer=self.peer,
                      command=negotiation.COMMAND_NAMES[self.request.command], destination=self.request.destination,
                      address=address)
        self.transport.write(negotiation.reply(negotiation.SUCCEEDED, bound.host, bound.port))
        self.setTimeout(self.factory.tunnel_idle_timeout)  # type: ignore[no-untyped-call]
        pending, self._buffer = self._buffer, b""
        if pending:
            # What the client sent before the reply (optimistic data).
            assert self.relay is not None
            self.relay.client_data(pending)

    def moved(self, forwarded: int = 0, returned: int = 0) -> None:
        """
        Bytes went from the client to a destination (C{forwarded}), or back.
        """
        self.resetTimeout()  # type: ignore[no-untyped-call]
        self.received += forwarded
        self.sent += returned
        metrics = self.factory.metrics
        metrics.received_bytes += forwarded
        metrics.sent_bytes += returned

    def _finish(self) -> None:
        # A relay is one access line, written when it closes (as Squid does).
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

    def refuse(self, code: int, reason: str) -> None:
        """
        Answer the request with C{code}, log why, and close.
        """
        if self.step == CONNECTING:
            self._refuse(code, reason)

    def _refuse(self, code: int, reason: str) -> None:
        self.transport.write(negotiation.reply(code))
        self._report(code)
        # An unreachable destination is an error, a refused one
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
        if self.step == TUNNEL:
            self._finish()
        self.step = DONE
        if self.relay is not None:
            self.relay.close()


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
    :ivar tunnels: the tunnels and UDP associations open now.
    :ivar udp: whether UDP ASSOCIATE is served (else it gets reply 7).
    :ivar listening: the addresses it listens on (the service adds each
        port as it starts).
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
        self.udp = True
        self.access_log = SocksAccessLog()
        self.metrics = SocksMetrics(self)
        self.listening = Listening()

    @property
    def destination_rules(self) -> LoopGuard:
        """
        What the addresses a request leads to are checked against: the
        proxy's own listening addresses, then C{rules}.  A tunnel to the
        proxy itself is a loop, refused even with C{--allow-local}: its
        connection would come from this host, as an allowed client.
        """
        return LoopGuard(self.rules, self.listening)

