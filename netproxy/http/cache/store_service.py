# -*- test-case-name: tests.http.cache.test_store_service -*-
"""
A cache store's start-up work and shutdown, as a service of the daemon.
"""

from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from netproxy.escaping import Logger


class Loadable(Protocol):
    """
    A store with work to do at start-up and writes to save at shutdown, as
    L{netproxy.http.cache.sqlite_store.SQLiteStore} has.
    """

    def load(self) -> "Deferred[None]":
        """
        Do the start-up work, over as many reactor turns as it takes.

        :returns: a L{Deferred} that fires once it is done.
        """

    def flush(self) -> None:
        """
        Save what is pending now; the store stays usable.
        """


class LoadOnStart(Service):
    """
    Start a store's start-up work when the daemon starts, and save what is
    pending when it stops (requests still draining may store more, saved
    as they are).  The proxy serves meanwhile.

    :param store: the L{Loadable} store.
    """

    log = Logger()

    def __init__(self, store: Loadable) -> None:
        self.store = store

    def startService(self) -> None:
        Service.startService(self)
        self.store.load().addErrback(lambda failure: self.log.failure("loading the cache failed", failure))

    def stopService(self) -> None:
        self.store.flush()
        Service.stopService(self)
