# -*- test-case-name: tests.http.test_pool -*-
"""
The pool of persistent upstream connections, shared by every client of the
HTTP proxy.

A connection goes back into the pool once its response has been read in
full and both sides agreed to keep it open; the next request for the same
origin takes it instead of connecting again.  Idle connections are closed
after C{idle_timeout} seconds, and the pool never holds more than
C{max_idle_per_origin} for one origin nor C{max_idle} in all, closing the
longest idle first.
"""

from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class ConnectionPool:
    """
    Idle upstream connections by origin.

    A pooled connection is any object with a C{transport} (closed with
    C{loseConnection}) and an C{idle_since} attribute the pool sets.

    Expiry uses one timer for the whole pool, set for the oldest idle
    connection, rather than one per connection: taking and putting back a
    connection on every request then costs no timer at all.

    :param clock: provides C{callLater}.
    :param idle_timeout: seconds an idle connection is kept.
    :param max_idle_per_origin: most idle connections kept for one origin.
    :param max_idle: most idle connections kept in all.
    """

    def __init__(self, clock: IReactorTime, idle_timeout: float = 30.0, max_idle_per_origin: int = 256,
                 max_idle: int = 1024) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self.max_idle = max_idle
        # origin -> connections, most recently used last; and every idle
        # connection in the order it went idle, for evicting the oldest.
        self._idle: dict[tuple[str, int], list[Any]] = {}
        self._all: OrderedDict[Any, tuple[str, int]] = OrderedDict()
        self._sweep: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._all)

    def take(self, origin: tuple[str, int]) -> Any:
        """
        :param origin: C{(host, port)}.
        :returns: the most recently used idle connection to C{origin}, now
            out of the pool, or L{None}.
        """
        connections = self._idle.get(origin)
        if not connections:
            return None
        connection = connections.pop()
        if not connections:
            del self._idle[origin]
        self._forget(connection)
        return connection

    def put(self, origin: tuple[str, int], connection: Any) -> None:
        """
        Keep an idle connection for later requests to C{origin}, closing the
        oldest idle ones if that makes too many.
        """
        connections = self._idle.setdefault(origin, [])
        connections.append(connection)
        self._all[connection] = origin
        connection.idle_since = self._clock.seconds()
        if self._sweep is None:
            self._sweep = self._clock.callLater(self.idle_timeout, self._expire)
        if len(connections) > self.max_idle_per_origin:
            self._close(origin, connections[0])
        while len(self._all) > self.max_idle:
            oldest, oldest_origin = next(iter(self._all.items()))
            self._close(oldest_origin, oldest)

    def lost(self, origin: tuple[str, int], connection: Any) -> None:
        """
        Forget an idle connection the origin closed.
        """
        connections = self._idle.get(origin)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._idle[origin]
            self._forget(connection)

    def close_all(self) -> None:
        """
        Close every idle connection (at shutdown).
        """
        for connection, origin in list(self._all.items()):
            self._close(origin, connection)

    def _expire(self) -> None:
        self._sweep = None
        deadline = self._clock.seconds() - self.idle_timeout
        # _all is in the order connections went idle: the expired ones lead.
        while self._all:
            connection, origin = next(iter(self._all.items()))
            if connection.idle_since > deadline:
                self._sweep = self._clock.callLater(connection.idle_since - deadline, self._expire)
                return
            self._close(origin, connection)

    def _close(self, origin: tuple[str, int], connection: Any) -> None:
        self.lost(origin, connection)
        connection.transport.loseConnection()

    def _forget(self, connection: Any) -> None:
        self._all.pop(connection, None)
        if not self._all and self._sweep is not None:
            if self._sweep.active():
                self._sweep.cancel()
            self._sweep = None
