# -*- test-case-name: tests.test_descriptors,tests.integration.test_descriptors -*-
"""
The open-file limit, fitted at start-up to the connections a role is
configured for.

Every connection is a file descriptor, and so is what serving it takes: the
HTTP proxy's connection to the origin and the cache file it reads or
writes, the relay's connection to the destination.  Under the usual soft
limit of 1,024 open files (systemd's default for services), a proxy
configured for C{--max-connections 5000} would run out of descriptors long
before its own limit, and Twisted's accept loop would then drop connections
instead of netproxy refusing them in order.

So, as Squid does with C{max_filedescriptors}, each listening role raises
its soft C{RLIMIT_NOFILE} at start-up as far as it needs, up to the hard
limit (no privilege is needed for that), and logs what it set.  It needs
L{descriptors_needed}::

    --max-connections x per connection + fixed + RESERVED

with, per connection, 3 for the HTTP proxy (the client, the origin, a cache
file), 2 for the relay and the reverse proxy (the client and the server it
dials), 1 for the others; C{fixed} is what the role holds whatever its
clients do (the HTTP proxy's 1,024 pooled idle origin connections); and
L{RESERVED} covers the rest of the process (standard streams, the reactor,
listening sockets, log files, resolver threads).

When even the hard limit cannot hold that many, the role starts anyway with
a lower effective C{--max-connections} (what the hard limit holds) and a
warning saying how to raise the hard limit, as nginx and HAProxy do: past
it, clients are refused in order, one at a time, which descriptors running
out would not do.
"""

import resource
from collections.abc import Callable

from netproxy.escaping import Logger

#: Descriptors kept for the process itself, whatever its connections.
RESERVED = 64

_GetLimit = Callable[[int], tuple[int, int]]
_SetLimit = Callable[[int, tuple[int, int]], None]


def descriptors_needed(connections: int, per_connection: int, fixed: int = 0) -> int:
    """
    :param connections: the connections to serve at once.
    :param per_connection: the descriptors each takes.
    :param fixed: the descriptors the role holds besides.
    :returns: the open-file limit they need, L{RESERVED} included.
    """
    return connections * per_connection + fixed + RESERVED


class DescriptorLimit:
    """
    Raises the soft open-file limit for a number of connections, and says
    how many connections the limit can hold.

    :param getrlimit: L{resource.getrlimit}, or a stand-in.
    :param setrlimit: L{resource.setrlimit}, or a stand-in.
    """

    log = Logger()

    def __init__(self, getrlimit: _GetLimit = resource.getrlimit, setrlimit: _SetLimit = resource.setrlimit) -> None:
        self._getrlimit = getrlimit
        self._setrlimit = setrlimit

    def fit(self, connections: int, per_connection: int, fixed: int = 0) -> int:
        """
        Raise the soft C{RLIMIT_NOFILE} towards the hard limit as far as
        C{connections} need (never lowering it), and log the limit set.

        :param connections: the configured C{--max-connections}.
        :param per_connection: the descriptors each connection takes.
        :param fixed: the descriptors the role holds besides, at most one
            per connection (the role bounds them by the connections it is
            given: the HTTP proxy's pool of idle upstream connections).
        :returns: the connections the limit now holds: C{connections}, or
            fewer (at least 1) when the hard limit is too low, with a warning.
        """
        needed = descriptors_needed(connections, per_connection, fixed)
        soft, hard = self._getrlimit(resource.RLIMIT_NOFILE)
        if _holds(soft, needed):
            self.log.info("open file limit {soft} holds --max-connections {connections} ({needed} needed)",
                          soft=_text(soft), connections=connections, needed=needed)
            return connections
        target = needed if _holds(hard, needed) else hard
        try:
            self._setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            self.log.warn("could not raise the open file limit from {soft} to {target}: {error}",
                          soft=soft, target=target, error=error)
            target = soft
        else:
            self.log.info("raised the open file limit from {soft} to {target} for --max-connections {connections} "
                          "({per_connection} per connection + {fixed})",
                          soft=soft, target=target, connections=connections, per_connection=per_connection,
                          fixed=fixed + RESERVED)
        if target >= needed:
            return connections
        possible = max(1, _fitting(target - RESERVED, per_connection, fixed))
        self.log.warn("the open file limit {limit} (hard limit {hard}) holds {possible} connections, not "
                      "--max-connections {connections}: serving at most {possible} at once; raise the hard limit "
                      "to {needed} (LimitNOFILE= in the systemd unit, ulimit -Hn in a shell)",
                      limit=target, hard=_text(hard), possible=possible, connections=connections, needed=needed)
        return possible


def _fitting(available: int, per_connection: int, fixed: int) -> int:
    """
    :returns: the most connections C{available} descriptors hold, each
        taking C{per_connection} plus one of the C{fixed} while they last:
        a short limit shrinks the fixed part with the connections rather
        than leaving them nothing.
    """
    alongside = available // (per_connection + 1)
    if alongside <= fixed:
        return alongside
    return (available - fixed) // per_connection


def _holds(limit: int, needed: int) -> bool:
    return limit == resource.RLIM_INFINITY or limit >= needed


def _text(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
