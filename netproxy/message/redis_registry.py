# -*- test-case-name: tests.message.test_redis_registry,tests.integration.test_reverse_redis -*-
"""
The switching table shared through Redis (C{--registry redis://...}), so
that any number of reverse proxies (and the workers of one) serve the
same servers with one strict round-robin.

Each operation is one Lua script (L{netproxy.message.redis_scripts}), run
atomically by Redis: a registration with its ownership and limit checks, a
removal (only of the registration it names), the choice of the servers for
one message (which moves the policy's pointer: the round-robin is global),
a down mark and its clearing.

Registrations are leases.  The process that took a setup holds it and
renews its lease every second (C{sync_every}) for as long as it holds it:
a lifeline's until the connection closes (then it is removed at once); a
server's that closed its setup connection at once, while it is not marked
down, so one that stops answering is gone a lease after it failed.  Any
process whose message such a server answers renews its lease too, so it
outlives the process that took its setup for as long as it answers.  A
process that dies stops renewing: its lifelines' servers, and the others it
took that no message reaches, are gone a lease later.

Redis unreachable (not connected, a reply late, an error): the process
serves from the last table it saw (copied from Redis every second, with its
own registrations), round-robin among its own messages only, and takes
setups into that table under the same rules, warning once per outage.
Reconnection has back-off (L{netproxy.redis_client}); once connected
again, the registrations this process holds are written back at once
(a Redis restarted empty, or leases that ended during the outage), each
through the registration script, so a conflicting one made meanwhile
elsewhere wins and ours is dropped.
"""

import json
import secrets
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.errors import SetupRefused, server_id_taken, too_many_servers
from netproxy.escaping import Logger
from netproxy.message.fields import ServerId
from netproxy.message.redis_scripts import CANDIDATES, MARK_DOWN, MARK_UP, REGISTER, REMOVE, SYNC
from netproxy.message.registry import DEFAULT_MAX_PER_HOST, DEFAULT_MAX_SERVERS, IServerRegistry, Server, \
    ServerRegistry, host_key
from netproxy.redis_client import RedisClient, RedisError, RedisUnavailable
from netproxy.resp import Reply, reply_number, reply_text

DEFAULT_PREFIX = "netproxy:reverse:"
DEFAULT_LEASE = 10.0


def _server_id(value: Reply) -> ServerId:
    text = reply_text(value)
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, (int, str)) and not isinstance(decoded, bool) else text


def _address(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(IServerRegistry)
class RedisRegistry(MultiService):
    """
    A switching table in Redis, with a copy in this process for when Redis
    cannot be reached.

    :param reactor: the clock.
    :param client: the connection to Redis (a child service of this one).
    :param lease: seconds a registration lives without being renewed.
    :param sync_every: seconds between renewals and copies of the table.
    :param prefix: the keys' prefix in Redis.
    Other parameters as L{ServerRegistry}'s.
    """

    log = Logger()

    def __init__(self, reactor: Any, client: RedisClient, first_retry: float = 1.0, max_retry: float = 30.0,
                 max_servers: int = DEFAULT_MAX_SERVERS, max_per_host: int = DEFAULT_MAX_PER_HOST,
                 lease: float = DEFAULT_LEASE, sync_every: float = 1.0, prefix: str = DEFAULT_PREFIX) -> None:
        MultiService.__init__(self)
        self._clock = reactor
        self.client = client
        MultiService.addService(self, client)
        client.on_connect.append(self.sync)
        self.local = ServerRegistry(reactor, first_retry, max_retry, max_servers, max_per_host)
        self._first_retry_ms = int(first_retry * 1000)
        self._max_retry_ms = int(max_retry * 1000)
        self.max_servers = max_servers
        self.max_per_host = max_per_host
        self._lease = lease
        self._lease_ms = max(1, int(lease * 1000))
        self._prefix = prefix
        # The registrations this process took, and whether each is a lifeline.
        self.held: dict[Server, bool] = {}
        # Every registration seen, by token, so a server keeps its counters.
        self._known: dict[str, Server] = {}
        self._renewed: dict[str, float] = {}
        self.degraded = False
        self._syncing = False
        self._loop = LoopingCall(self.sync)
        self._loop.clock = reactor
        self._sync_every = sync_every

    def startService(self) -> None:
        MultiService.startService(self)
        self._loop.start(self._sync_every, now=False).addErrback(
            lambda failure: self.log.failure("the registry's renewals stopped", failure))

    def stopService(self) -> "Deferred[None]":
        if self._loop.running:
            self._loop.stop()
        stopped: Deferred[None] = MultiService.stopService(self)
        return stopped

    def _unreachable(self, failure: Failure, doing: str) -> None:
        # Anything but an outage is a bug, which must reach the log as one.
        if not failure.check(RedisUnavailable, RedisError):
            self.log.failure("{doing} in Redis failed", failure, doing=doing)
        if not self.degraded:
            self.degraded = True
            self.log.warn("Redis at {address} is unavailable ({reason}): serving from the last table seen, "
                          "round-robin within this process only, until it is back", address=str(self.client.address),
                          reason=failure.getErrorMessage())

    def _reachable(self) -> None:
        if self.degraded:
            self.degraded = False
            self.log.info("Redis at {address} is back: the shared table is in force again",
                          address=str(self.client.address))

    def _run(self, script: Any, *args: Any) -> "Deferred[Reply]":
        return self.client.run(script, (), (self._prefix, *args))

    def register(self, server_id: ServerId, policy: str, host: str, port: int) -> "Deferred[Server]":
        """
        Register in Redis, with the checks of L{ServerRegistry.register}
        made there across every process; into the local table alone (with
        its checks) while Redis is unreachable.

        :returns: a L{Deferred} firing with the new L{Server}, or failing
            with L{SetupRefused}.
        """
        server = Server(server_id, policy, host_key(host), port, token=secrets.token_hex(8))

        def local(failure: Failure) -> Server:
            failure.trap(RedisUnavailable, RedisError)
            self._unreachable(failure, "a registration")
            taken = self.local.register(server_id, policy, host, port)
            self.held[taken] = False
            return taken

        def registered(ignored: object) -> Server:
            self.held[server] = False
            return server

        return self._write(server).addCallbacks(registered, local)

    def _write(self, server: Server) -> "Deferred[None]":
        # Fails with SetupRefused when Redis refuses it.
        writing = self._run(REGISTER, server.key, json.dumps(server.server_id), server.policy, server.host,
                            server.port, server.token, self._lease_ms, self.max_servers, self.max_per_host)

        def done(reply: Reply) -> None:
            if not (isinstance(reply, list) and len(reply) == 3 and reply[0] in (b"ok", b"taken", b"full")):
                raise RedisError(f"ERR unexpected reply to a registration: {reply!r:.200}")
            self._reachable()
            status, first, second = reply
            if status == b"taken":
                raise server_id_taken(server.server_id, _address(reply_text(first), reply_text(second)))
            if status == b"full":
                raise too_many_servers(reply_number(first), reply_text(second) or None)
            old_policy, old_port = reply_text(first), reply_text(second)
            if old_policy and (old_policy, old_port) != (server.policy, str(server.port)):
                self.log.warn("server id {server_id} at {old_address} of privacy policy {old_policy} displaced by "
                              "a new setup for {address} of privacy policy {policy}", server_id=server.server_id,
                              old_address=_address(server.host, old_port), old_policy=old_policy,
                              address=server.address, policy=server.policy)
            self._known[server.token] = server
            self.local.put(server)

        return writing.addCallback(done)

    def remove(self, server: Server) -> "Deferred[bool]":
        """
        Forget C{server} unless a newer registration has replaced it.  While
        Redis is unreachable only the local table forgets it; its lease
        then ends by itself, since no one renews it.

        :returns: a L{Deferred} firing with whether it was removed.
        """
        lifeline = self.held.pop(server, None)
        removed_here = self.local.remove(server)
        if lifeline is None and not removed_here:
            return succeed(False)

        def done(reply: Reply) -> bool:
            self._reachable()
            return reply == 1

        def local(failure: Failure) -> bool:
            self._unreachable(failure, "a removal")
            return removed_here

        return self._run(REMOVE, server.key, server.token).addCallbacks(done, local)

    def candidates(self, policy: str) -> "Deferred[list[Server]]":
        """
        The servers to try for one message, from Redis (one script, which
        moves the policy's pointer for every process), or from the local
        table while Redis is unreachable.
        """
        def done(reply: Reply) -> list[Server]:
            try:
                entries = json.loads(reply if isinstance(reply, bytes) else b"")
                now = self._clock.seconds()
                servers = [self._server(token, _server_id(server_id), policy, host, port, failures, wait, 0, now)
                           for _, server_id, host, port, token, failures, wait in entries]
            except (ValueError, TypeError) as error:
                raise RedisError(f"ERR unexpected reply to candidates: {reply!r:.200} ({error})")
            self._reachable()
            return servers

        def local(failure: Failure) -> list[Server]:
            if failure.check(CancelledError):
                # The message's client left: Redis is fine, and no server
                # of the local table is due to take a message.
                failure.raiseException()
            self._unreachable(failure, "choosing servers")
            return self.local.candidates(policy)

        return self._run(CANDIDATES, policy).addCallback(done).addErrback(local)

    def _server(self, token: str, server_id: ServerId, policy: str, host: str, port: int, failures: int,
                retry_at: int, now: int, seconds: float | None = None) -> Server:
        # retry_at and now are Redis's times (ms), turned into this process's clock.
        server = self._known.get(token)
        if server is None or (server.policy, server.host, server.port) != (policy, host, port):
            if type(port) is not int or type(failures) is not int or type(retry_at) is not int:
                raise TypeError(f"a port, failures and retry time must be whole numbers: {port!r}")
            server = self._known[token] = Server(server_id, policy, host, port, token=token)
        server.failures = failures
        seconds = self._clock.seconds() if seconds is None else seconds
        server.retry_at = None if retry_at < 0 else seconds + (retry_at - now) / 1000
        return server

    def mark_down(self, server: Server) -> None:
        """
        Mark C{server} down here at once, and in Redis for every process.
        """
        self.local.mark_down(server)
        if not server.token:
            return

        def done(reply: Reply) -> None:
            if isinstance(reply, list) and len(reply) == 2 and reply_number(reply[0]) > 0:
                server.failures = reply_number(reply[0])
                server.retry_at = self._clock.seconds() + reply_number(reply[1]) / 1000

        self._run(MARK_DOWN, server.key, server.token, self._first_retry_ms, self._max_retry_ms,
                  self._lease_ms).addCallbacks(done, self._unreachable, errbackArgs=("a down mark",))

    def mark_up(self, server: Server) -> None:
        """
        Record an answered message: clear a down mark in Redis when there
        is one, and renew the lease of a server that answers (at most three
        times a lease), however it registered.
        """
        down = server.failures > 0 or server.retry_at is not None
        self.local.mark_up(server)
        if not server.token:
            return
        now = self._clock.seconds()
        renew = now - self._renewed.get(server.token, float("-inf")) >= self._lease / 3
        if not (down or renew):
            return
        if renew:
            self._renewed[server.token] = now
        self._run(MARK_UP, server.key, server.token, self._lease_ms if renew else 0).addErrback(
            self._unreachable, "clearing a down mark")

    def lifeline(self, server: Server) -> None:
        """
        C{server}'s lease is renewed until it is removed, down or not.
        """
        if server in self.held:
            self.held[server] = True
            # Marked so in Redis now rather than at the next renewal.
            self.sync()

    def servers(self, policy: str | None = None) -> list[Server]:
        """
        :returns: the servers of the last table seen (L{ServerRegistry.servers}).
        """
        return self.local.servers(policy)

    def count(self, host: str | None = None) -> int:
        """
        :returns: the count of the last table seen (L{ServerRegistry.count}).
        """
        return self.local.count(host)

    def sync(self) -> "Deferred[None]":
        """
        Renew the leases of the registrations held, write back those Redis
        has lost (or never had), and copy the table for the fallback.

        :returns: a L{Deferred} firing when done (never failing).
        """
        if self._syncing or not self.client.connected:
            return succeed(None)
        self._syncing = True
        confirmed = [(server, lifeline) for server, lifeline in self.held.items() if server.token in self._known]
        args: list[Any] = [self._lease_ms]
        for server, lifeline in confirmed:
            args += [server.key, server.token, int(lifeline)]

        def done(reply: Reply) -> "Deferred[None]":
            if not isinstance(reply, list) or len(reply) != 4 or not all(isinstance(part, list)
                                                                          for part in reply[1:]):
                raise RedisError(f"ERR unexpected reply to a renewal: {reply!r:.200}")
            now, statuses, table, turns = reply
            try:
                self._copy(table, turns, reply_number(now))
            except (ValueError, TypeError) as error:
                raise RedisError(f"ERR unexpected table in a renewal: {error}")
            self._reachable()
            missing = [server for server, _ in self.held.items() if server.token not in self._known]
            for (server, lifeline), status in zip(confirmed, statuses):
                if status == b"missing" and (lifeline or not server.failures):
                    missing.append(server)
                elif status != b"ok":
                    # Replaced elsewhere, or its lease ended while it was down.
                    self.held.pop(server, None)
            return self._write_back(missing)

        def finished(result: object) -> None:
            self._syncing = False
            if isinstance(result, Failure):
                self._unreachable(result, "renewing the leases")

        return self._run(SYNC, *args).addCallback(done).addBoth(finished)

    def _copy(self, table: list[Reply], turns: list[Reply], now: int) -> None:
        entries = []
        for entry in table:
            if not isinstance(entry, list) or len(entry) != 9:
                raise RedisError(f"ERR unexpected registration: {entry!r}")
            key, server_id, policy, host, port, token, order, failures, retry_at = entry
            server = self._server(reply_text(token), _server_id(server_id), reply_text(policy), reply_text(host), reply_number(port),
                                  reply_number(failures), reply_number(retry_at), now)
            entries.append((server.policy, reply_number(order), server))
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        servers = [server for _, _, server in entries]
        # Those this process holds that Redis does not know yet stay in the copy.
        current = {server.key for server in servers}
        servers += [server for server in self.held if server.key not in current]
        pointers = {reply_text(turns[i]): reply_number(turns[i + 1]) for i in range(0, len(turns) - 1, 2)}
        self.local.restore(servers, pointers)
        keep = {server.token for server in servers}
        self._known = {token: server for token, server in self._known.items() if token in keep}
        self._renewed = {token: when for token, when in self._renewed.items() if token in keep}

    def _write_back(self, servers: list[Server]) -> "Deferred[None]":
        # One after another: the order they registered in is kept.
        done: Deferred[None] = succeed(None)
        for server in servers:
            done.addCallback(self._write_one_back, server)
        return done

    def _write_one_back(self, ignored: object, server: Server) -> "Deferred[None]":
        if server not in self.held:
            return succeed(None)
        server.token = secrets.token_hex(8)

        def written(ignored: object) -> None:
            self.log.info("registration of server id {server_id} of privacy policy {policy} written back to Redis",
                          server_id=server.server_id, policy=server.policy)

        def refused(failure: Failure) -> None:
            failure.trap(SetupRefused)
            self.held.pop(server, None)
            self.local.remove(server)
            self.log.warn("registration of server id {server_id} dropped: {reason}", server_id=server.server_id,
                          reason=failure.value.detail)

        return self._write(server).addCallbacks(written, refused)
