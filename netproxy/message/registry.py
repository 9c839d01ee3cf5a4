# -*- test-case-name: tests.message.test_registry -*-
"""
The reverse proxy's switching table: which servers serve which privacy
policy, in what order they take messages, and which are down.

It does no I/O, so round-robin, replacement, removal and failover are
plain method calls in the tests; the clock it is given decides when a down
server may be tried again.

A down server is not probed with connections of its own (a bare
connect-and-close crashes many simple servers, which read one message per
connection): once its back-off has passed it takes its turn in the rotation
again, and the message it is given fails over to the next server if it
still does not answer.  It rejoins for good when it accepts one.
"""

from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from netproxy.message.fields import ServerId, identity


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
    """

    server_id: ServerId
    policy: str
    host: str
    port: int
    failures: int = 0
    retry_at: float | None = None
    forwarded: int = field(default=0)

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


class ServerRegistry:
    """
    Servers by privacy policy, in registration order, with a strict
    round-robin rotation per policy.

    :param clock: provides C{seconds()}.
    :param first_retry: seconds before a server that just failed is tried again.
    :param max_retry: the longest wait; each failure in a row doubles the wait up to it.
    """

    def __init__(self, clock: IReactorTime, first_retry: float = 1.0, max_retry: float = 30.0) -> None:
        self._clock = clock
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._by_key: dict[str, Server] = {}
        self._policies: dict[str, list[Server]] = {}
        self._next: dict[str, int] = {}

    def register(self, server_id: ServerId, policy: str, host: str, port: int) -> Server:
        """
        Record a server.  One that registers again with the same id replaces
        its old entry, in the old entry's place in the rotation if the policy
        is unchanged, and starts out up.

        :returns: the new L{Server}.
        """
        server = Server(server_id, policy, host, port)
        old = self._by_key.get(server.key)
        servers = self._policies.setdefault(policy, [])
        if old is not None and old.policy == policy:
            servers[servers.index(old)] = server
        else:
            if old is not None:
                self._drop(old)
            servers.append(server)
        self._by_key[server.key] = server
        return server

    def remove(self, server: Server) -> bool:
        """
        Forget C{server}, unless it has been replaced by a newer registration.

        :returns: whether it was removed.
        """
        if self._by_key.get(server.key) is not server:
            return False
        del self._by_key[server.key]
        self._drop(server)
        return True

    def _drop(self, server: Server) -> None:
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
        # The exponent is bounded: a server down for hours fails more than
        # 1024 times in a row, and 2 ** 1024 does not fit in a float.
        wait = min(self._max_retry, self._first_retry * 2 ** min(server.failures - 1, 64))
        server.retry_at = self._clock.seconds() + wait

    def mark_up(self, server: Server) -> None:
        """
        Record an answered message.
        """
        server.failures = 0
        server.retry_at = None
        server.forwarded += 1
