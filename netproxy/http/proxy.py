# -*- test-case-name: tests.http.test_proxy,tests.http.test_forwarding,tests.http.test_caching -*-
"""
The HTTP proxy's client connections: reads requests one after another
(pipelining tolerated), runs an L{Exchange} or a L{Tunnel} for each, and
answers what it refuses with a short error page.

Clients are admitted by source address (loopback only by default, so a
fresh install is never an open proxy).
"""

import math
from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.acl import RuleSet, parse_rule
from netproxy.connections import TrackedProtocol, TrackingFactory, client_host
from netproxy.errors import HTTPError
from netproxy.escaping import Logger
from netproxy.http.access_log import AccessLog
from netproxy.http.background import Background
from netproxy.http.cache.responses import Cache
from netproxy.http.exchange import Exchange
from netproxy.http.head import HeadReader, RequestHead, parse_request_head
from netproxy.http.interfaces import IExchangeClient
from netproxy.http.loops import Listening, LoopGuard
from netproxy.http.message import PSEUDONYM, Target, error_response, no_delay
from netproxy.http.pool import ConnectionPool
from netproxy.http.proxy_metrics import HttpMetrics
from netproxy.http.tunnel import Tunnel
from netproxy.http.upstream import UpstreamConnection
from netproxy.rate_limit import ClientLimits, RateLimiter
from netproxy.this_host import LocalDestinations

if TYPE_CHECKING:
    from netproxy.acl import Rule
    from netproxy.http.auth import ProxyAuth
    from netproxy.http.parents import Parents
    from netproxy.http.pac import PacFile


@implementer(IExchangeClient)
class ProxyProtocol(TrackedProtocol):
    """
    One client connection of the HTTP proxy.
    """

    log = Logger()
    #: Who the request in progress authenticated as (C{--auth-file}).
    user: str | None = None
    factory: "ProxyFactory"
    exchange: Exchange | None
    tunnel: Tunnel | None
    reader: HeadReader | None
    _head_timer: IDelayedCall | None
    #: Its client's rate limits (C{--rate-limit}, C{--max-requests-rate}),
    #: or L{None}.
    limits: ClientLimits | None = None

    def makeConnection(self, transport: Any) -> None:
        limiter = self.factory.rate_limiter
        host = None if limiter is None else client_host(transport.getPeer())
        if limiter is not None and host is not None:
            # Before anything sees the transport: whoever writes to it or
            # pauses it does so through the client's limits.
            self.limits = limiter.join(host)
            transport = self.limits.wrap(transport)
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.exchange = None
        self.tunnel = None
        self.reader = None
        self.stopping = False
        # Runs from the first byte of a request head to its end: --timeout
        # bounds how long a client takes to send it, whatever the idle
        # timeout between requests.
        self._head_timer = None
        host = self.client_host
        if host is None or self.factory.allow.match(host) is None:
            self.fail(HTTPError(403, f"client {host} is not allowed to use this proxy"))
            return
        self.factory.listening.accepted(self.transport.getHost())
        # One reader for every request of the connection: it starts afresh
        # after each head.
        self.reader = self._reader = HeadReader(parse_request_head)
        no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.factory.metrics.received_bytes += len(data)
        if self.limits is not None:
            self.limits.received(len(data))
        if self.tunnel is not None:
            self.tunnel.client_data(data)
        elif self.exchange is not None:
            try:
                self.exchange.client_data(data)
            except HTTPError as error:
                self.fail(error)
        elif self.reader is not None:
            self._read(data)

    def _read(self, data: bytes) -> None:
        reader = self.reader
        assert reader is not None
        try:
            head, rest = reader.feed(data)
        except HTTPError as error:
            self.fail(error)
            return
        if head is None:
            if data and self._head_timer is None:
                self._head_timer = self.factory.reactor.callLater(self.factory.timeout, self._head_timed_out)
            return
        self._cancel_head_timer()
        self.reader = None
        self.user = None
        if self.limits is not None:
            wait = self.limits.admit_request()
            if wait is not None:
                self._too_many_requests(head, wait)
                return
        auth = self.factory.auth
        if auth is not None:
            # Calls begin_request, or answers 407 (and maybe await_request).
            auth.admit(self, head, rest)
            return
        self.begin_request(head, rest)

    def _too_many_requests(self, head: RequestHead, wait: float) -> None:
        # Refused before anything else, proxy authentication included: a
        # client over its rate costs no password check.  The client's
        # ClientLimits warned once; the access log has every refusal.
        started = self.factory.reactor.seconds()
        limiter = self.factory.rate_limiter
        assert limiter is not None
        retry = (b"Retry-After", b"%d" % (max(1, math.ceil(wait)),))
        page = error_response(429, f"too many requests from {self.client_host}: at most "
                              f"{limiter.request_rate:g} a second (--max-requests-rate)",
                              extra_headers=[retry])
        self.transport.write(page)
        self.transport.loseConnection()
        self.log_access(head, 429, len(page.partition(b"\r\n\r\n")[2]), started)

    def begin_request(self, head: RequestHead, rest: bytes, user: str | None = None) -> None:
        """
        Start the exchange of the request with C{head}; C{rest} holds the
        bytes that followed it, and C{user} who it authenticated as (see
        L{netproxy.http.auth}), for the access log.
        """
        self.user = user
        self.exchange = Exchange(self, head)
        try:
            self.exchange.begin(rest)
        except HTTPError as error:
            self.fail(error)

    def await_request(self) -> None:
        """
        Read the next request on this connection: the last one was answered
        by the proxy itself (a 407) and left nothing unread.
        """
        self.reader = self._reader

    def start_tunnel(self, target: Target, rest: bytes) -> None:
        """
        Turn this connection into a CONNECT tunnel to C{target}.
        """
        exchange, self.exchange = self.exchange, None
        assert exchange is not None
        self.tunnel = Tunnel(self, target, exchange.head, exchange.started)
        self.tunnel.open(rest)

    def exchange_done(self, keep_alive: bool, leftover: bytes) -> None:
        """
        The exchange in progress has sent its whole response.
        """
        assert self.exchange is not None
        paused = self.exchange.client_paused
        self.exchange = None
        if not keep_alive or self.stopping:
            self.transport.loseConnection()
            return
        self.reader = self._reader
        if paused:
            self.transport.resumeProducing()
        if leftover:
            self._read(leftover)

    def fail(self, error: HTTPError) -> None:
        """
        Answer C{error} with its status and a short page, and close.
        """
        exchange = self.exchange
        if exchange is not None:
            exchange.cancel()
            if exchange.status is not None:
                # The response has started: a page now would be read as
                # part of its body, so cut the connection instead.
                self.log.warn("{peer}: response cut short: {reason}", peer=self.peer, reason=str(error))
                self.abort()
                return
            self.exchange = None
        # The client's fault is a warning; an origin that cannot be reached
        # or does not answer is an error (STYLE.md).
        level = self.log.warn if error.client_fault else self.log.error
        level("{peer}: {status} {reason}", peer=self.peer, status=error.status, reason=str(error))
        self._cancel_head_timer()
        self.reader = None
        if self.transport.producer is not None:
            self.transport.unregisterProducer()
        page = error_response(error.status, str(error))
        self.transport.write(page)
        self.transport.resumeProducing()
        self.transport.loseConnection()
        size = len(page.partition(b"\r\n\r\n")[2])
        if exchange is not None:
            self.log_access(exchange.head, error.status, size, exchange.started, exchange.cache_result)
        elif self.tunnel is not None:
            self.log_access(self.tunnel.head, error.status, size, self.tunnel.started)

    def abort(self) -> None:
        """
        Cut the connection: the response already started cannot be completed.
        """
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            # Nothing of an incomplete response may stay behind: its
            # upstream connection, its cache entry being written.
            exchange.cancel()
            self.log_access(exchange.head, exchange.status, exchange.sent, exchange.started, exchange.cache_result)
        self.transport.abortConnection()

    def log_access(self, head: RequestHead, status: int | None, size: int, started: float,
                   cache: str = "BYPASS") -> None:
        """
        Report a request this connection has finished with to the access log.

        :param head: its L{netproxy.http.head.RequestHead}.
        :param status: the status sent, or L{None} when none was.
        :param size: the bytes of response body sent.
        :param started: when its head was read, by the reactor's clock.
        """
        self.factory.finished(self.client_host or "-", head, status, size, started, cache, self.user)

    def close_when_idle(self) -> None:
        # A response in progress is completed first; a tunnel stays until
        # the shutdown deadline, since nothing says when it is idle.
        self.stopping = True
        if self.exchange is None and self.tunnel is None:
            self.close()

    def timeoutConnection(self) -> None:
        if self.exchange is not None or self.tunnel is not None:
            # Waiting on the origin is not the client's idleness: the
            # exchange has its own timeout, and tunnels may idle.
            self.postpone_timeout()
            return
        if self._head_timer is not None:
            self._head_timed_out()
            return
        super().timeoutConnection()

    def _head_timed_out(self) -> None:
        self._cancel_head_timer()
        self.fail(HTTPError(408, "the request was not received in time"))

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None and self._head_timer.active():
            self._head_timer.cancel()
        self._head_timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._cancel_head_timer()
        if self.limits is not None:
            self.limits.leave(self.transport)
        if self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            exchange.cancel()
            # The client left before its response was complete.
            self.log_access(exchange.head, exchange.status, exchange.sent, exchange.started, exchange.cache_result)
        if self.tunnel is not None:
            self.tunnel.close()


class ProxyFactory(TrackingFactory):
    """
    The HTTP proxy's shared state: rules, pool and timeouts.

    :param reactor: the reactor to connect with, and the clock.
    :param allow: client addresses admitted (anything with C{match(host)}).
    :param rules: destinations refused (anything with C{match(host, port)}).
    :param connect_ports: ports CONNECT may reach.
    :param timeout: seconds an origin may take to answer, and a client to
        send its request.
    :param connect_timeout: seconds an origin may take to accept.
    :param cache: the shared L{netproxy.http.cache.responses.Cache}, or L{None} to
        forward everything.
    :param admin: client addresses allowed to administer the proxy (PURGE),
        anything with C{match(host)}; loopback by default.
    :ivar listening: the addresses it listens on (L{Listening}), to which
        nothing is forwarded: tell it of each port (L{Listening.add}).
    :ivar rules: C{rules}, behind the refusal of those addresses
        (L{LoopGuard}), for every destination and its resolved address.
    """

    protocol = ProxyProtocol
    reactor: Any
    #: The L{netproxy.http.auth.ProxyAuth} clients must pass, or L{None}.
    auth: "ProxyAuth | None" = None
    #: The L{netproxy.this_host.LocalDestinations} refused (the http role's
    #: default), or L{None} to allow them (C{--allow-local}).
    local: LocalDestinations | None = None
    #: The received-by of the Via it adds, and by which it knows a loop.
    pseudonym: bytes = PSEUDONYM
    #: The L{netproxy.http.parents.Parents} it forwards through, or L{None}.
    parents: "Parents | None" = None
    #: The operator's PAC file (C{--pac-file}), or L{None} to generate one.
    pac_file: "PacFile | None" = None
    #: The destinations a generated PAC file sends DIRECT, after the
    #: browser's own host: the C{--direct} rules.
    pac_direct: "Iterable[Rule]" = ()
    #: The clients' rate limits, or L{None} for none.
    rate_limiter: RateLimiter | None = None

    def __init__(self, reactor: Any, allow: Any, rules: Any, connect_ports: Iterable[int] = frozenset({443}),
                 timeout: float = 30.0, connect_timeout: float = 10.0, cache: Cache | None = None,
                 admin: Any = None) -> None:
        super().__init__(reactor, timeout)
        self.allow = allow
        self.listening = Listening()
        self.rules = LoopGuard(rules, self.listening)
        self.connect_ports = frozenset(connect_ports)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cache = cache
        if admin is None:
            admin = RuleSet([parse_rule("127.0.0.0/8"), parse_rule("::1"), parse_rule("unix")])
        self.admin = admin
        self.pool = ConnectionPool(reactor)
        self.access_log = AccessLog()
        self.metrics = HttpMetrics(self)

    def finished(self, client: str, head: RequestHead, status: int | None, size: int, started: float, cache: str,
                 user: str | None = None) -> None:
        """
        A request is finished: count it, and write its access line.

        :param client: the client's address, C{-} for the proxy's own.
        :param head: its L{netproxy.http.head.RequestHead}.
        :param status: the status sent, or L{None} when none was.
        :param size: the bytes of response body sent.
        :param started: when its head was read, by the reactor's clock.
        :param cache: the cache status.
        :param user: the user it authenticated as (C{--auth-file}), or L{None}.
        """
        self.metrics.finished(head.method, status, size, cache)
        self.access_log.finished(client, head, status, size, self.reactor.seconds() - started, cache, user)

    def revalidate(self, head: RequestHead, key: bytes) -> None:
        """
        Revalidate the stored response for C{key} in the background (RFC
        5861's stale-while-revalidate), for the request with C{head} that
        was just served it stale.
        """
        Background(self, head, key).start()

    def idle_upstream_lost(self, connection: UpstreamConnection) -> None:
        """
        A pooled connection was closed by its origin.
        """
        self.pool.lost(connection.origin, connection)

    def stopFactory(self) -> None:
        self.pool.close_all()
