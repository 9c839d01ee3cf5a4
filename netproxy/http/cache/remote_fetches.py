# -*- test-case-name: tests.http.cache.test_remote_fetches -*-
"""
Collapsed forwarding across processes: a miss another process sharing the
cache directory is fetching is waited for, not fetched again.

L{netproxy.http.cache.responses.Cache} collapses the misses of one process;
when it would lead a fetch, it first takes the miss's lease
(L{netproxy.http.cache.fetch_leases}).  When another process holds it, the
requests for that miss wait here, and the lease is looked at every
L{POLL_SECONDS}: once it is given back (the other process stored the
response, or found it could not be stored) or lost (that process died, or
took longer than the lease allows), each waiting request looks in the
store again and, if the response is still not there, goes upstream itself.
"""

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from netproxy.escaping import Logger
from netproxy.http.cache.fetch_leases import FetchLeases
from netproxy.http.cache.spill_writer import entry_name

#: Seconds between two looks at the leases waited for: the most a waiting
#: request is delayed past the moment the response is stored.
POLL_SECONDS = 0.01


class Reconsulting(Protocol):
    """A request waiting for a miss another process fetches."""

    def reconsult(self) -> None:
        """The fetch is over: look in the store again, or go upstream."""


class RemoteFetches:
    """
    The misses of one process's cache that other processes are fetching.

    :param leases: the shared store's leases.
    :param reactor: the clock, and what the looks are scheduled with.
    :param waiters: removes and returns the requests waiting for a key.
    """

    log = Logger()

    def __init__(self, leases: FetchLeases, reactor: IReactorTime,
                 waiters: Callable[[bytes], list[Any]]) -> None:
        self._leases = leases
        self._reactor = reactor
        self._waiters = waiters
        self._keys: set[bytes] = set()
        self._call: IDelayedCall | None = None
        try:
            # Left by processes killed while they fetched.
            leases.forget_dead()
        except sqlite3.Error as e:
            self.log.error("could not delete the leases of dead processes: {error}", error=str(e))

    def lead(self, key: bytes) -> bool:
        """
        :returns: whether this process is to fetch C{key}'s miss (it then
            holds the lease, given back by L{release}); L{False} when
            another process is fetching it, and the requests that wait for
            it are to be handed back once it is over.
        """
        try:
            if self._leases.claim(entry_name(key), self._reactor.seconds()):
                return True
        except sqlite3.Error as e:
            self.log.error("could not take the lease of a miss: {error}", error=str(e))
            return True  # fetch: better twice than never
        self._keys.add(key)
        if self._call is None:
            self._call = self._reactor.callLater(POLL_SECONDS, self._look)
        return False

    def release(self, key: bytes) -> None:
        """
        The fetch this process led for C{key} is over: what it stored is
        committed with the lease given back.
        """
        try:
            self._leases.release(entry_name(key))
        except sqlite3.Error as e:
            self.log.error("could not give back the lease of a miss: {error}", error=str(e))

    def _look(self) -> None:
        self._call = None
        now = self._reactor.seconds()
        for key in list(self._keys):
            try:
                held = self._leases.held_elsewhere(entry_name(key), now)
            except sqlite3.Error:
                held = False
            if not held:
                self._keys.discard(key)
                for waiter in self._waiters(key):
                    waiter.reconsult()
        if self._keys:
            self._call = self._reactor.callLater(POLL_SECONDS, self._look)
