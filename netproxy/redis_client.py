# -*- test-case-name: tests.test_redis_client -*-
"""
A small Redis client for the reactor: one connection, commands pipelined
on it (each answered in order by a L{Deferred}), Lua scripts run by their
SHA-1 with the source sent only when the server does not know it yet, and
the connection kept up with back-off.

Why our own rather than a client from PyPI: the registry needs a handful of
commands (C{EVALSHA}, C{EVAL}, C{SELECT}, C{AUTH}) over RESP2, which is
about two hundred lines with L{netproxy.resp}; the Twisted clients on PyPI
(txredisapi) are far larger, are not annotated, and bring their own
reconnecting factory and connection pool, whereas this one uses Twisted's
C{ClientService} as every other outbound connection here does.  Nothing
blocks: it is a plain L{Protocol}.

A command never waits for a connection: while there is none it fails at
once with L{RedisUnavailable}, so a caller can fall back at once rather
than queue work behind an outage.  A command that gets no reply within
C{timeout} seconds fails likewise, and the connection is dropped and made
again (a Redis that hangs is as good as a Redis that is gone).
"""

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python import usage
from twisted.python.failure import Failure

from netproxy.escaping import Logger
from netproxy.resp import RedisError, Reply, RespDecoder, RespError, encode_command

DEFAULT_PORT = 6379
# Seconds a command may wait for its reply before the connection is dropped.
DEFAULT_TIMEOUT = 2.0
# The most databases a URL may name: Redis has 16 unless configured otherwise.
MAX_DATABASE = 1 << 16

__all__ = ["RedisAddress", "RedisClient", "RedisError", "RedisProtocol", "RedisUnavailable", "Script",
           "parse_redis_url"]


class RedisUnavailable(Exception):
    """
    No answer from Redis: not connected, the connection was lost, or the
    reply did not come in time.
    """


@dataclass(frozen=True)
class RedisAddress:
    """
    Where a Redis server is, as a C{redis://} URL says.

    :ivar host: its host name or address.
    :ivar port: its port.
    :ivar database: the database number to C{SELECT}.
    :ivar username: the ACL user to C{AUTH} as, or L{None}.
    :ivar password: the password to C{AUTH} with, or L{None}.
    """

    host: str
    port: int = DEFAULT_PORT
    database: int = 0
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        # Never the password: this text goes to the log.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.database}"


def parse_redis_url(option: str, value: str) -> RedisAddress:
    """
    Parse C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}.

    :param option: the option's name, for the error message.
    :raises UsageError: for anything else (another scheme, a query, a port
        or database that is not a number in range), naming the option.
    """
    def bad(why: str) -> usage.UsageError:
        return usage.UsageError(f"--{option}: expected redis://HOST[:PORT][/DB] ({why}), got {value!r}")

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise bad(str(error))
    if parts.scheme != "redis":
        raise bad("the scheme must be redis")
    if not parts.hostname or parts.query or parts.fragment:
        raise bad("a host, and no query or fragment")
    if any(character.isspace() for character in value):
        raise bad("no spaces")
    database = parts.path[1:] if parts.path.startswith("/") else parts.path
    if database and not (database.isascii() and database.isdigit() and int(database) < MAX_DATABASE):
        raise bad("the database is a number")
    if port == 0:
        raise bad("the port is from 1 to 65535")
    password = None if parts.password is None else unquote(parts.password)
    username = unquote(parts.username) if parts.username else None
    return RedisAddress(parts.hostname, port or DEFAULT_PORT, int(database or 0), username, password)


class Script:
    """
    A Lua script, known to Redis by the SHA-1 of its source.

    :ivar source: the Lua text.
    :ivar sha: its SHA-1 hex digest, as C{EVALSHA} takes it.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


Argument = bytes | str | int | float


class RedisProtocol(Protocol):
    """
    One connection to Redis: commands written as they come, replies
    matched to them in order.

    :param clock: for the reply timeout.
    :param timeout: seconds the oldest command may wait for its reply.
    :param decoder: reads the replies (its bounds are the connection's).
    """

    log = Logger()
    transport: Any

    def __init__(self, clock: IReactorTime, timeout: float = DEFAULT_TIMEOUT,
                 decoder: RespDecoder | None = None) -> None:
        self._clock = clock
        self._timeout = timeout
        self._decoder = RespDecoder() if decoder is None else decoder
        self._pending: deque[Deferred[Reply]] = deque()
        self._timer: IDelayedCall | None = None
        self._gone: str | None = None
        # Told when the connection is lost (the client's bookkeeping).
        self.on_lost: Callable[["RedisProtocol"], object] | None = None

    def itself(self) -> "RedisProtocol":
        """
        :returns: this protocol (C{ClientService} hands its
            C{prepareConnection} a proxy of it, whose attributes are not its own).
        """
        return self

    def execute(self, *args: Argument) -> "Deferred[Reply]":
        """
        Send one command.

        :returns: a L{Deferred} firing with its reply, or failing with
            L{RedisError} (an error reply) or L{RedisUnavailable}.
        """
        if self._gone is not None or self.transport is None:
            return fail(RedisUnavailable(self._gone or "not connected"))
        answer: Deferred[Reply] = Deferred()
        self._pending.append(answer)
        self.transport.write(encode_command(args))
        if self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._timed_out)
        return answer

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self._decoder.feed(data)
        except RespError as error:
            self.log.error("bad reply from Redis: {reason}; closing the connection", reason=str(error))
            self._give_up(f"bad reply from Redis: {error}")
            return
        for reply in replies:
            if not self._pending:
                self.log.error("a reply from Redis that no command asked for; closing the connection")
                self._give_up("a reply that no command asked for")
                return
            answer = self._pending.popleft()
            if answer.called:  # its caller cancelled it
                continue
            if isinstance(reply, RedisError):
                answer.errback(reply)
            else:
                answer.callback(reply)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and self._gone is None:
            self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self.log.error("no reply from Redis within {timeout} s; closing the connection", timeout=self._timeout)
        self._give_up(f"no reply within {self._timeout} s")

    def _give_up(self, why: str) -> None:
        self._fail_all(why)
        self.transport.abortConnection()

    def _fail_all(self, why: str) -> None:
        self._gone = why
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        for answer in pending:
            if not answer.called:
                answer.errback(RedisUnavailable(why))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._fail_all(self._gone or f"connection lost: {reason.getErrorMessage()}")
        if self.on_lost is not None:
            self.on_lost(self)


class RedisClient(Service):
    """
    A connection to one Redis server, made again with back-off whenever it
    is lost, for as long as the service runs.

    :param reactor: to connect with, and the clock.
    :param address: the server, its database and credentials.
    :param timeout: seconds to connect, and for each reply.
    :param endpoint: where to connect (built from C{address} when L{None}).
    :param retry_policy: seconds to wait before attempt N (ClientService's).
    :ivar on_connect: called with no argument each time a connection is
        ready (authenticated, its database selected).
    """

    log = Logger()

    def __init__(self, reactor: Any, address: RedisAddress, timeout: float = DEFAULT_TIMEOUT,
                 endpoint: IStreamClientEndpoint | None = None,
                 retry_policy: Callable[[int], float] | None = None) -> None:
        self.address = address
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
        factory = Factory.forProtocol(partial(RedisProtocol, reactor, timeout))
        factory.noisy = False
        policy = retry_policy or backoffPolicy(initialDelay=0.2, maxDelay=5.0, factor=2.0)
        self._connector = ClientService(endpoint, factory, retryPolicy=policy, clock=reactor,
                                        prepareConnection=self._prepare)
        self.protocol: RedisProtocol | None = None
        self.on_connect: list[Callable[[], object]] = []
        # Until the first attempt to connect has ended, commands wait for it
        # rather than fail: a process just started has not had its chance.
        self._first_attempt = False

    def startService(self) -> None:
        Service.startService(self)
        self._first_attempt = True

        def ended(result: object) -> None:
            self._first_attempt = False

        # Asked before the first attempt, which may end at once.
        self._connector.whenConnected(failAfterFailures=1).addBoth(ended)
        self._connector.startService()

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        self.protocol = None
        self._first_attempt = False
        stopped: Deferred[None] = self._connector.stopService()
        return stopped

    def _prepare(self, connection: IProtocol) -> "Deferred[None]":
        protocol = cast(RedisProtocol, connection).itself()
        protocol.on_lost = self._lost
        ready: Deferred[Reply] = succeed(None)
        if self.address.password is not None:
            credentials = [self.address.username] if self.address.username else []
            ready.addCallback(lambda _: protocol.execute("AUTH", *credentials, self.address.password or ""))
        if self.address.database:
            ready.addCallback(lambda _: protocol.execute("SELECT", self.address.database))

        def connected(ignored: object) -> None:
            self.protocol = protocol
            self.log.info("connected to Redis at {address}", address=str(self.address))
            for callback in list(self.on_connect):
                callback()

        def refused(failure: Failure) -> Failure:
            self.log.error("Redis at {address} refused the connection's set-up: {reason}",
                           address=str(self.address), reason=failure.getErrorMessage())
            protocol.transport.loseConnection()
            return failure

        return ready.addCallbacks(connected, refused)

    def _lost(self, protocol: RedisProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
            if self.running:
                self.log.warn("lost the connection to Redis at {address}; connecting again",
                              address=str(self.address))

    @property
    def connected(self) -> bool:
        """
        Whether a connection is ready for commands.
        """
        return self.protocol is not None

    def execute(self, *args: Argument) -> "Deferred[Reply]":
        """
        Send one command.

        :returns: a L{Deferred} firing with its reply, or failing with
            L{RedisError} or L{RedisUnavailable} (at once when not connected).
        """
        if self.protocol is None:
            if self._first_attempt:
                first: Deferred[Any] = self._connector.whenConnected(failAfterFailures=1)
                return first.addCallbacks(lambda _: self.execute(*args), self._not_connected)
            return self._not_connected(None)
        return self.protocol.execute(*args)

    def _not_connected(self, failure: object) -> "Deferred[Reply]":
        return fail(RedisUnavailable(f"not connected to Redis at {self.address}"))

    def run(self, script: Script, keys: Sequence[Argument], args: Sequence[Argument]) -> "Deferred[Reply]":
        """
        Run C{script} by its SHA-1 (C{EVALSHA}), sending its source
        (C{EVAL}, which also loads it) only when Redis does not know it:
        after a restart, or the first time.

        :returns: a L{Deferred} firing with the script's reply.
        """
        def load(failure: Failure) -> "Deferred[Reply] | Failure":
            if isinstance(failure.value, RedisError) and failure.value.kind == "NOSCRIPT":
                return self.execute("EVAL", script.source, len(keys), *keys, *args)
            return failure

        return self.execute("EVALSHA", script.sha, len(keys), *keys, *args).addErrback(load)
