# -*- test-case-name: tests.message.test_registry -*-
"""
The reverse proxy's switching table: which servers serve which privacy
policy, in what order they take messages, which are down, and whose each
server id is.

It does no I/O, so round-robin, replacement, removal and failover are
plain method calls in the tests; the clock it is given decides when a down
server may be tried again.

Where the truth lives: C{_by_key} (server id -> L{Server}) says which
registrations exist, and each L{Server} holds its own up/down state.
C{_policies} (the rotation order per policy) and C{_per_host} (the count of
servers per host) are indexes over it, changed only by C{_add} and
C{_drop}, in the same call; C{_next} is each policy's rotation pointer.
A registry shared between processes (L{netproxy.message.redis_registry},
C{--registry redis://}) must keep, in one atomic step per operation:

 1. one registration per id, owned by the host it came from: a setup for a
    held id from another host changes nothing; from the same host it
    replaces the registration (fresh up/down state), in its place in the
    rotation when the policy is unchanged;
 2. the count of registrations at most C{max_servers}, and per host at most
    C{max_per_host}, checked and changed together with the insertion (a
    replacement by the same host changes neither count);
 3. each policy's rotation listing exactly its registrations, once each, in
    registration order, and each message advancing the pointer by exactly
    one (strict round-robin across every process);
 4. a removal taking effect only while the registration removed is still
    the current one for its id (not a newer one from a restart): compare
    the registration itself (a token), never just the id;
 5. down marks belonging to one registration, shared by every process.

A down server is not probed with connections of its own (a bare
connect-and-close crashes many simple servers, which read one message per
connection): once its back-off has passed it takes its turn in the rotation
again, and the message it is given fails over to the next server if it
still does not answer.  It rejoins for good when it accepts one.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from netproxy.backoff import retry_wait
from netproxy.errors import server_id_taken, too_many_servers
from netproxy.escaping import Logger
from netproxy.message.fields import ServerId, identity

DEFAULT_MAX_SERVERS = 1024
DEFAULT_MAX_PER_HOST = 64

_T = TypeVar("_T")


def asked(method: "Callable[..., _T | Deferred[_T]]", *args: Any) -> "Deferred[_T]":
    """
    Call a method of an L{IServerRegistry} that may answer now or later.

    :returns: a L{Deferred} firing with its result (C{maybeDeferred}, typed:
        an exception it raises becomes the L{Deferred}'s failure).
    """
    return cast("Deferred[_T]", maybeDeferred(method, *args))


def host_key(host: str) -> str:
    """
    :returns: the canonical text of an address, so that one host has one
        spelling: C{::ffff:127.0.0.1} is C{127.0.0.1}, C{0:0::1} is C{::1}.
        Text that is not an address is returned as it is.
    """
    try:
        address = ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(eq=False)
class Server:
    """
    One registered server.

    :ivar server_id: the id as the server sent it.
    :ivar policy: the privacy policy it serves.
    :ivar host: the address its setup came from.
    :ivar port: the port it takes data messages on.
    :ivar failures: failed attempts since it last answered.
    :ivar retry_at: when a down server may be tried again; L{None} when up.
    :ivar forwarded: messages it has answered.
    :ivar token: what tells this registration from another of the same id
        in a shared registry; empty while only this process knows it.
    """

    server_id: ServerId
    policy: str
    host: str
    port: int
    failures: int = 0
    retry_at: float | None = None
    forwarded: int = field(default=0)
    token: str = ""

    @property
    def key(self) -> str:
        """
        The id the registry knows the server by (see L{identity}).
        """
        return identity(self.server_id)

    @property
    def address(self) -> str:
        """
        C{host:port}, with brackets around an IPv6 address.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def available(self, now: float) -> bool:
        """
        :returns: whether the server is up, or down with its back-off over.
        """
        return self.retry_at is None or now >= self.retry_at


class IServerRegistry(Interface):
    """
    The switching table as the reverse proxy and its forwarder use it.

    The methods that a shared registry answers over the network
    (L{register}, L{remove}, L{candidates}) return their result or a
    L{Deferred} firing with it (callers use C{maybeDeferred}); the others
    return at once, a shared registry doing its writes in the background.
    """

    def register(server_id: ServerId, policy: str, host: str, port: int) -> "Server | Deferred[Server]":
        """
        Record a server registering from C{host}; see L{ServerRegistry.register}.

        :raises SetupRefused: (or fails with it) when the id is another
            host's or a limit is reached.
        """

    def remove(server: Server) -> "bool | Deferred[bool]":
        """
        Forget C{server} unless a newer registration has replaced it.

        :returns: whether it was removed.
        """

    def candidates(policy: str) -> "list[Server] | Deferred[list[Server]]":
        """
        The servers to try for one message, in order, advancing the rotation by one.
        """

    def mark_down(server: Server) -> None:
        """
        Record a failed attempt.
        """

    def mark_up(server: Server) -> None:
        """
        Record an answered message.
        """

    def lifeline(server: Server) -> None:
        """
        C{server} keeps its setup connection open: its registration lasts
        until L{remove}d (in a shared registry, its lease is renewed until then).
        """

    def servers(policy: str | None = None) -> list[Server]:
        """
        :returns: the servers of C{policy} in registration order, or all.
        """

    def count(host: str | None = None) -> int:
        """
        :returns: how many servers are registered from C{host}, or in all.
        """


@implementer(IServerRegistry)
class ServerRegistry:
    """
    Servers by privacy policy, in registration order, with a strict
    round-robin rotation per policy; each server id owned by the host that
    registered it.

    :param clock: provides C{seconds()}.
    :param first_retry: seconds before a server that just failed is tried again.
    :param max_retry: the longest wait; each failure in a row doubles the wait up to it.
    :param max_servers: the most servers registered at once.
    :param max_per_host: the most servers registered at once from one host.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, first_retry: float = 1.0, max_retry: float = 30.0,
                 max_servers: int = DEFAULT_MAX_SERVERS, max_per_host: int = DEFAULT_MAX_PER_HOST) -> None:
        self._clock = clock
        self._first_retry = first_retry
        self._max_retry = max_retry
        self.max_servers = max_servers
        self.max_per_host = max_per_host
        self._by_key: dict[str, Server] = {}
        self._policies: dict[str, list[Server]] = {}
        self._per_host: Counter[str] = Counter()
        self._next: dict[str, int] = {}

    def register(self, server_id: ServerId, policy: str, host: str, port: int) -> Server:
        """
        Record a server registering from C{host}.

        The id is the host's while it is registered: from the same host, a
        setup replaces the old entry (a restarted server), in its place in
        the rotation if the policy is unchanged, and the new entry starts
        out up; from another host it is refused.  A new id is refused past
        C{max_servers} in all or C{max_per_host} from C{host}.

        :param host: the address the setup came from (any spelling).
        :returns: the new L{Server}.
        :raises SetupRefused: when the id is another host's or a limit is reached.
        """
        server = Server(server_id, policy, host_key(host), port)
        old = self._by_key.get(server.key)
        if old is not None and old.host != server.host:
            raise server_id_taken(server_id, old.address)
        if old is None:
            if len(self._by_key) >= self.max_servers:
                raise too_many_servers(self.max_servers)
            if self._per_host[server.host] >= self.max_per_host:
                raise too_many_servers(self.max_per_host, server.host)
        elif (old.port, old.policy) != (port, policy):
            self.log.warn("server id {server_id} at {old_address} of privacy policy {old_policy} displaced by "
                          "a new setup for {address} of privacy policy {policy}", server_id=server_id,
                          old_address=old.address, old_policy=old.policy, address=server.address, policy=policy)
        self.put(server)
        return server

    def put(self, server: Server) -> None:
        """
        Record C{server} as the registration of its id, replacing the old
        one (in its place in the rotation when the policy is unchanged),
        without the checks of L{register}: a shared registry made them.
        """
        old = self._by_key.get(server.key)
        if old is not None and old.policy == server.policy:
            servers = self._policies[server.policy]
            servers[servers.index(old)] = server
            if old.host != server.host:
                self._per_host[old.host] -= 1
                if not self._per_host[old.host]:
                    del self._per_host[old.host]
                self._per_host[server.host] += 1
            self._by_key[server.key] = server
        else:
            if old is not None:
                self._drop(old)
            self._add(server)

    def restore(self, servers: Iterable[Server], turns: Mapping[str, int]) -> None:
        """
        Replace the whole table: a shared registry's copy of its own.

        :param servers: every registration, each policy's in rotation order.
        :param turns: each policy's rotation pointer.
        """
        self._by_key.clear()
        self._policies.clear()
        self._per_host.clear()
        for server in servers:
            if server.key not in self._by_key:
                self._add(server)
        self._next = {policy: turn for policy, turn in turns.items() if policy in self._policies}

    def _add(self, server: Server) -> None:
        self._by_key[server.key] = server
        self._per_host[server.host] += 1
        self._policies.setdefault(server.policy, []).append(server)

    def remove(self, server: Server) -> bool:
        """
        Forget C{server}, unless it has been replaced by a newer registration.

        :returns: whether it was removed.
        """
        if self._by_key.get(server.key) is not server:
            return False
        self._drop(server)
        return True

    def _drop(self, server: Server) -> None:
        del self._by_key[server.key]
        self._per_host[server.host] -= 1
        if not self._per_host[server.host]:
            del self._per_host[server.host]
        servers = self._policies[server.policy]
        index = servers.index(server)
        del servers[index]
        # Keep the rotation pointing at the server that was due next.
        if index < self._next.get(server.policy, 0):
            self._next[server.policy] -= 1
        if not servers:
            del self._policies[server.policy]
            self._next.pop(server.policy, None)

    def servers(self, policy: str | None = None) -> list[Server]:
        """
        :returns: the servers of C{policy} in registration order, or every
            server when C{policy} is L{None}.
        """
        if policy is None:
            return [server for servers in self._policies.values() for server in servers]
        return list(self._policies.get(policy, ()))

    def count(self, host: str | None = None) -> int:
        """
        :returns: how many servers are registered from C{host} (any
            spelling), or in all when C{host} is L{None}.
        """
        if host is None:
            return len(self._by_key)
        return self._per_host.get(host_key(host), 0)

    def candidates(self, policy: str) -> list[Server]:
        """
        The servers to try for one message, in order, advancing the rotation
        by one: the available servers from the one whose turn it is, then the
        down ones, soonest due first, as a last resort.

        :returns: a list of L{Server}s, empty when none serves C{policy}.
        """
        servers = self._policies.get(policy)
        if not servers:
            return []
        now = self._clock.seconds()
        start = self._next.get(policy, 0) % len(servers)
        ordered = servers[start:] + servers[:start]
        ready = [server for server in ordered if server.available(now)]
        waiting = sorted((server for server in ordered if not server.available(now)), key=lambda s: s.retry_at or 0.0)
        chosen = (ready or waiting)[0]
        self._next[policy] = servers.index(chosen) + 1
        return ready + waiting

    def mark_down(self, server: Server) -> None:
        """
        Record a failed attempt: the server waits C{first_retry} seconds,
        doubled for each failure in a row, up to C{max_retry}.
        """
        server.failures += 1
        wait = retry_wait(server.failures, self._first_retry, self._max_retry)
        server.retry_at = self._clock.seconds() + wait

    def mark_up(self, server: Server) -> None:
        """
        Record an answered message.
        """
        server.failures = 0
        server.retry_at = None
        server.forwarded += 1

    def lifeline(self, server: Server) -> None:
        """
        Nothing to do: a registration here lasts until it is removed.
        """
