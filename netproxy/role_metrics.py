# -*- test-case-name: tests.test_role_metrics -*-
"""
What the metrics of every proxy role have in common: the registry and the
daemon's start time, the reactor's stalls, and the page, which is the
registry's alone or, for a worker of several, the whole service's
(L{RoleMetrics.share}).  Each role's metrics (the HTTP proxy's, the SOCKS
role's) add their own instruments between the start time and the stalls.
"""

import time
from collections.abc import Callable

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime

from netproxy.instruments import Gauge, Registry
from netproxy.stalls import StallMonitor, stall_metrics
from netproxy.worker_metrics import WorkerPages
from netproxy.worker_options import Worker


class RoleMetrics:
    """
    The registry a role's metrics are added to, first showing when the
    daemon started.

    :ivar page: renders the page: the registry's, or the whole service's
        once L{share}d.
    :ivar stalls: the monitor of the reactor once L{watch_stalls} made it,
        for the role's services to start.
    """

    stalls: StallMonitor

    def __init__(self) -> None:
        self.started = time.time()
        self.registry = Registry()
        self.registry.add(Gauge("netproxy_start_time_seconds", "When the daemon started, in seconds since the epoch.",
                                read=lambda: self.started))
        self.page: Callable[[], bytes] = self.registry.render

    def watch_stalls(self, reactor: IReactorTime) -> None:
        """
        Measure the stalls of C{reactor}, shown after the metrics added so
        far.  Not running until a service parent starts L{stalls}.
        """
        self.stalls = StallMonitor(reactor)
        for metric in stall_metrics(self.stalls):
            self.registry.add(metric)

    def share(self, worker: Worker, reactor: IReactorTime) -> IService:
        """
        Make the page the whole service's, for a worker of several: what
        the others counted is added to this one's (L{WorkerPages}).

        :returns: the service that writes this worker's page for the others.
        """
        pages = WorkerPages(worker.state, worker.index, worker.count, self.registry.render, reactor)
        self.page = pages.render
        return pages
