# -*- test-case-name: tests.http.test_auth -*-
"""
The HTTP proxy's gate (C{--auth-file}): the check of each request's
C{Proxy-Authorization: Basic ...} (RFC 9110 section 11, RFC 7617) against the
users of L{netproxy.http.passwords}, and the 407 answer.

Checking a password is deliberately slow, so it runs in the reactor's thread
pool rather than on the reactor thread, and each credential that passed is
remembered (a bounded table keyed by an HMAC-SHA-256 of user and password,
never the password), so a client pays for it once, not per request.  Requests
that arrive with the same credentials while they are being checked wait for
that check (a browser opens several connections at once).  The checks go
through a L{LoginThrottle}: an address that failed too often gets 407 without
a check (held for C{TARPIT} seconds first), and no address's checks hold up
another's.
"""

import binascii
import hashlib
import hmac
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from netproxy.errors import TOO_MANY_FAILURES, HTTPError
from netproxy.escaping import Logger
from netproxy.http.framing import request_framing
from netproxy.http.head import RequestHead, header_values
from netproxy.http.login_throttle import LoginThrottle, client_key
from netproxy.http.message import error_response, keep_alive
from netproxy.http.passwords import MAX_PASSWORD, AuthFile, Users

CHALLENGE = (b"Proxy-Authenticate", b'Basic realm="netproxy"')
# Bytes of a Proxy-Authorization value looked at; a longer one is refused
# unread.  Real credentials take a few dozen.
MAX_CREDENTIALS = 4096
# Credentials remembered as checked.  Each is about 200 bytes.
CACHE_SIZE = 1024
# Seconds a try from a client that failed too often is held before its 407.
TARPIT = 1.0

#: How a slow check is run: called with L{Users.verify} and its arguments,
#: it returns a L{Deferred} of the result.
RunBlocking = Callable[[Callable[[str, bytes], bool], str, bytes], "Deferred[bool]"]


class Verdict(NamedTuple):
    """
    What a request's credentials prove.

    :ivar user: the user name they authenticate, or L{None} when refused.
    :ivar problem: why they were refused, for the log (never holding the
        password).
    :ivar answer: why they were refused, for the 407 page, when it must say
        less than the log (whether the user exists); else C{problem}.
    """

    user: str | None
    problem: str | None = None
    answer: str | None = None
    #: Seconds before the client may try again, when it tried too often
    #: (then the refusal was logged once, by the throttle).
    retry_after: float | None = None


class GatedTransport(Protocol):
    """
    What the gate uses of a client connection's transport.
    """

    connected: bool
    disconnecting: bool

    def write(self, data: bytes) -> None:
        """Send C{data} to the client."""

    def loseConnection(self) -> None:
        """Close the connection once what was written is sent."""

    def pauseProducing(self) -> None:
        """Stop reading from the client."""

    def resumeProducing(self) -> None:
        """Read from the client again."""

    def getPeer(self) -> IAddress:
        """The client's address."""


class GatedConnection(Protocol):
    """
    What the gate uses of the client connection a request came on (a
    L{netproxy.http.proxy.ProxyProtocol}).
    """

    transport: GatedTransport
    #: The client's address, for the log.
    peer: str
    #: Whether the proxy is shutting down, so no request may follow.
    stopping: bool

    def begin_request(self, head: RequestHead, rest: bytes, user: str | None = None) -> None:
        """Go on with the request: it may pass, as C{user} if one is given."""

    def await_request(self) -> None:
        """Read the next request: this one was answered and left nothing unread."""

    def log_access(self, head: RequestHead, status: int, size: int, started: float) -> None:
        """Report the request, answered with C{status}, to the access log."""

    def fail(self, error: HTTPError) -> None:
        """Answer C{error} and close."""


def parse_basic(value: bytes) -> tuple[bytes, bytes]:
    """
    Read the credentials of a C{Basic} authorization (RFC 7617).

    :param value: the C{Proxy-Authorization} field value.
    :returns: C{(user, password)}, both L{bytes}.
    :raises ValueError: when C{value} is not Basic credentials, saying why
        without quoting them.
    """
    if len(value) > MAX_CREDENTIALS:
        raise ValueError("Proxy-Authorization is too long")
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise ValueError("Proxy-Authorization does not use the Basic scheme")
    token = token.strip(b" ")
    if not token:
        raise ValueError("Proxy-Authorization has no credentials")
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
    except binascii.Error:
        raise ValueError("Proxy-Authorization credentials are not valid base64") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise ValueError("Proxy-Authorization credentials have no ':' between user and password")
    if len(password) > MAX_PASSWORD:
        raise ValueError("Proxy-Authorization password is too long")
    return user, password


def _in_thread_pool(reactor):
    def run(function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


class ProxyAuth:
    """
    The HTTP proxy's gate: lets a request through to its exchange when its
    C{Proxy-Authorization} names a user of the auth file with the right
    password, and answers 407 otherwise.
    """

    log = Logger()

    def __init__(self, auth_file: AuthFile, reactor: IReactorTime, run_blocking: RunBlocking | None = None,
                 cache_size: int = CACHE_SIZE, throttle: LoginThrottle | None = None) -> None:
        """
        :param auth_file: the L{AuthFile} (anything with C{users}).
        :param reactor: the clock, and (unless C{run_blocking} or
            C{throttle} is given) an L{IReactorThreads} whose thread pool
            the checks run in.
        :param run_blocking: how to run a slow check; by default in
            C{reactor}'s thread pool.
        :param cache_size: how many checked credentials to remember.
        :param throttle: what runs the checks, limiting failed logins per
            client address; by default a L{LoginThrottle} with its default
            limits, running checks with C{run_blocking}.
        """
        self.auth_file = auth_file
        self._reactor = reactor
        if throttle is None:
            throttle = LoginThrottle(reactor, _in_thread_pool(reactor) if run_blocking is None else run_blocking)
        self.throttle = throttle
        self.tarpit = TARPIT
        self._cache_size = cache_size
        # Remembered credentials go with the users they were checked
        # against: a reload forgets them all.
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._cache_users: Users | None = None
        # Checks under way, by the users and key they are for, with the
        # results waiting for each.
        self._checking: dict[tuple[Users, bytes], list[tuple[Deferred[bool | None], Callable[[], bool]]]] = {}
        # Keys are HMACs under a secret of this process, so the table holds
        # nothing a dictionary attack could start from.
        self._secret = os.urandom(32)

    def authenticate(self, headers: list[tuple[bytes, bytes]], client: str = "-",
                     wanted: Callable[[], bool] = lambda: True) -> "Deferred[Verdict]":
        """
        Check the credentials in a request's fields.

        :param headers: the request's fields.
        :param client: who sent them, as L{client_key} names it: failed
            logins are counted, and checks are limited, per client.
        :param wanted: whether the verdict is still wanted (the client has
            not gone), asked when a waiting check's turn comes.
        :returns: a L{Deferred} firing with a L{Verdict}: at once when no
            password needs checking (no or malformed credentials, or ones
            checked before), after C{tarpit} seconds for a client that
            failed too often (without a check), else once the password is
            checked.
        """
        values = header_values(headers, b"proxy-authorization")
        if not values:
            return succeed(Verdict(None, "proxy authentication required"))
        if len(values) > 1:
            return succeed(Verdict(None, "more than one Proxy-Authorization field"))
        try:
            user, password = parse_basic(values[0])
        except ValueError as error:
            return succeed(Verdict(None, str(error)))
        return self.check(user, password, client, wanted)

    def check(self, user: bytes, password: bytes, client: str = "-",
              wanted: Callable[[], bool] = lambda: True) -> "Deferred[Verdict]":
        """
        Check a user name and password, however the client sent them (a
        C{Proxy-Authorization} field, a SOCKS5 login): checked ones are
        remembered, and checks are throttled per client, as for
        L{authenticate}.

        :param user: the user name sent.
        :param password: the password sent.
        :param client: who sent them, as L{client_key} names it.
        :param wanted: whether the verdict is still wanted.
        :returns: a L{Deferred} firing with a L{Verdict}.
        """
        users = self.auth_file.users
        if self._cache_users is not users:
            self._cache.clear()
            self._cache_users = users
        key = hmac.new(self._secret, user + b":" + password, hashlib.sha256).digest()
        name = self._cache.get(key)
        if name is not None:
            self._cache.move_to_end(key)
            return succeed(Verdict(name))
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            # No user of the (UTF-8) file has this name.
            return succeed(Verdict(None, "the user name is not UTF-8"))
        wait = self.throttle.wait(client)
        if wait:
            # Held a while (HAProxy's tarpit), so a client looping tries on
            # its connections costs the reactor little.
            return deferLater(self._reactor, self.tarpit, Verdict, None, TOO_MANY_FAILURES, retry_after=wait)
        result: Deferred[bool | None] = Deferred()
        waiting = self._checking.get((users, key))
        if waiting is not None:
            waiting.append((result, wanted))
        else:
            # Listed before the check starts: it may end at once.
            waiting = self._checking[users, key] = [(result, wanted)]
            checked = self.throttle.run(client, users.verify, name, password,
                                        wanted=lambda: any(still() for _, still in waiting))
            checked.addBoth(self._fan_out, users, key)
        return result.addCallback(self._checked, users, key, name, client)

    def _fan_out(self, outcome: bool | None | Failure, users: Users, key: bytes) -> None:
        for result, _ in self._checking.pop((users, key)):
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)

    def _checked(self, good: bool | None, users: Users, key: bytes, name: str, client: str) -> Verdict:
        if good is None:
            return Verdict(None, "the client left before its password was checked")
        if not good:
            self.throttle.failed(client)
            # The page says the same for both; only the log tells them apart,
            # and names only users that exist (a password typed as a user
            # name stays out of it).
            problem = f"wrong password for user {name}" if name in users else "unknown user"
            return Verdict(None, problem, "wrong user name or password")
        if users is self.auth_file.users:
            self._cache[key] = name
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return Verdict(name)

    def admit(self, protocol: GatedConnection, head: RequestHead, rest: bytes) -> None:
        """
        Decide the request with C{head}, followed by C{rest}, that came on
        C{protocol}: let it through with C{protocol.begin_request}, or answer
        407.  While a password is being checked the connection is not read
        from.
        """
        if head.target[:1] == b"/" and head.method != b"CONNECT":
            # The proxy's own pages (origin-form) are not proxied: clients
            # send them no proxy credentials, and --admin guards them.
            protocol.begin_request(head, rest)
            return
        started = self._reactor.seconds()
        transport = protocol.transport
        deciding = maybeDeferred(self.authenticate, head.headers, client_key(transport.getPeer()),
                                 lambda: transport.connected and not transport.disconnecting)
        paused = not deciding.called
        if paused:
            protocol.transport.pauseProducing()
        deciding.addCallback(self._decided, protocol, head, rest, started, paused)
        deciding.addErrback(self._broken, protocol)

    def _decided(self, verdict: Verdict, protocol: GatedConnection, head: RequestHead, rest: bytes, started: float,
                 paused: bool) -> None:
        transport = protocol.transport
        if paused:
            if not transport.connected or transport.disconnecting:
                # The client left, or the proxy is shutting down.
                return
            transport.resumeProducing()
        if verdict.user is not None:
            protocol.begin_request(head, rest, verdict.user)
        else:
            self._refuse(protocol, head, rest, started, verdict)

    def _refuse(self, protocol: GatedConnection, head: RequestHead, rest: bytes, started: float,
                verdict: Verdict) -> None:
        extra = [CHALLENGE]
        if verdict.retry_after is None:
            self.log.warn("{peer}: 407 {reason}", peer=protocol.peer, reason=verdict.problem)
        else:
            # The throttle warned once, and the access log has each refusal:
            # a line per refusal here would let the client flood the log.
            extra.append((b"Retry-After", b"%d" % (math.ceil(verdict.retry_after),)))
        keep = self._may_keep(protocol, head, rest)
        if keep and head.version < (1, 1):
            extra.append((b"Connection", b"keep-alive"))
        reason = verdict.answer or verdict.problem
        assert reason is not None, "a refusal says why"
        page = error_response(407, reason, close=not keep, extra_headers=extra)
        response_head, _, body = page.partition(b"\r\n\r\n")
        if head.method == b"HEAD":
            # On a connection kept open, a body would be read as the next response.
            body = b""
        protocol.transport.write(response_head + b"\r\n\r\n" + body)
        protocol.log_access(head, 407, len(body), started)
        if keep:
            protocol.await_request()
        else:
            protocol.transport.loseConnection()

    @staticmethod
    def _may_keep(protocol: GatedConnection, head: RequestHead, rest: bytes) -> bool:
        """
        :returns: whether the connection may carry the client's next try:
            it asked to keep it, and nothing of this request is left to
            read past (no body) or already read (a pipelined request,
            answered on a fresh connection instead).
        """
        if rest or protocol.stopping or not keep_alive(head.version, head.headers):
            return False
        try:
            framing = request_framing(head.version, head.headers)
        except HTTPError:
            return False
        return framing.kind == "none" or (framing.kind == "length" and framing.length == 0)

    def _broken(self, failure: Failure, protocol: GatedConnection) -> None:
        self.log.failure("checking the credentials of {peer} failed", failure, peer=protocol.peer)
        if protocol.transport.connected and not protocol.transport.disconnecting:
            protocol.fail(HTTPError(500, "the credentials could not be checked"))
