# -*- test-case-name: tests.test_access_events -*-
"""
Where a proxy role reports each request it has finished, for its access
log (C{--access-log}): to a L{LogPublisher} of its own, not to the
daemon's main log, so that with no C{--access-log} no observer is attached
and nothing is formatted.  Each role's access log (the HTTP proxy's, the
SOCKS role's) builds on L{AccessEvents} with its own event and line.
"""

from twisted.logger import ILogObserver, Logger, LogPublisher

from netproxy.worker_options import Worker


class AccessEvents:
    """
    A role's access events, emitted to the observers added.

    Twisted's own L{Logger}, not L{netproxy.escaping.Logger}: each role's
    line formatter escapes the fields a client chose, as its format wants.

    :ivar enabled: whether an observer was added: without one, a role
        skips building its event.
    :ivar worker: with C{--workers} above 1, the worker this process is,
        named on each line.
    """

    def __init__(self, namespace: str) -> None:
        """
        :param namespace: the events' C{log_namespace}.
        """
        self._publisher = LogPublisher()
        self._log = Logger(namespace=namespace, observer=self._publisher)
        self.enabled = False
        self.worker: Worker | None = None

    def add_observer(self, observer: ILogObserver) -> None:
        """
        Send access events to C{observer} too.
        """
        self._publisher.addObserver(observer)
        self.enabled = True

    def worker_index(self) -> int | None:
        """
        :returns: the worker to name on a line, or L{None} when this process
            is the only one.
        """
        return None if self.worker is None or self.worker.count == 1 else self.worker.index
