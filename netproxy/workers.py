# -*- test-case-name: tests.test_workers,tests.integration.test_workers -*-
"""
The main process of a role served by several worker processes
(C{--workers N}; L{netproxy.worker_control} is the worker's side).

The main process opens every listening socket (or takes those systemd
passed), then starts N workers with its own command line; each inherits
the sockets and adopts them (Twisted's C{IReactorSocket.adoptStreamPort}),
so all N accept from the same sockets.  It serves nothing itself: it keeps
its copy of each socket open without accepting, restarts a worker that
dies, forwards C{SIGHUP} and C{SIGTERM} to every worker, and is the only
process that talks to systemd.

Why one shared socket rather than one per worker (C{SO_REUSEPORT}): the
kernel queues a new connection on the socket, not on a process, so while
one worker is down (killed, restarting) the others, and the main process's
copy, keep the socket listening and its queue is served; with a socket per
worker, the connections queued on a dead worker's socket are reset, and
new ones hashed to it are refused until it is back.  It is also the only
way to share a socket systemd passes (there is one).

A worker that dies is started again after a delay that doubles from 0.1 s
up to 10 s, counted from the first again once a worker has run for
L{STABLE_AFTER} seconds.  During start-up a worker that dies before it
listens stops the whole service instead (exit status 1), as a role that
cannot start does.
"""

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.application.service import IService, MultiService, Service
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from netproxy.escaping import Logger
from netproxy.reload import ReloadOnHangup
from netproxy.systemd import SystemdNotifier
from netproxy.worker_metrics import retire, write_restarts
from netproxy.worker_control import serve_as_worker
from netproxy.worker_options import Worker
from netproxy.worker_process import CONTROL, FIRST_LISTENING, WorkerProcess, worker_command, worker_environment

# A worker that ran this many seconds before it died was not crashing at
# start: its next restart waits the shortest delay again.
STABLE_AFTER = 10.0
restart_delay = backoffPolicy(initialDelay=0.1, maxDelay=10.0, factor=2.0, jitter=lambda: 0.0)
# Seconds past --shutdown-timeout before a worker still running is killed.
STOP_GRACE = 5.0


class SharedByWorkers(Factory):
    """
    The factory of the main process's copy of a listening socket, which
    never accepts: the workers do.
    """

    noisy = False

    def buildProtocol(self, addr: object) -> Protocol | None:
        return None


def hold(description: str, reactor: Any) -> Any:
    """
    Listen on C{description} without accepting.

    :returns: the listening port, paused.
    :raises Exception: what listening raised (a port in use), synchronously,
        so start-up fails as it does with one process.
    """
    result: list[Any] = []
    serverFromString(reactor, description).listen(SharedByWorkers()).addBoth(result.append)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    port = result[0]
    port.stopReading()
    return port


class Supervisor(Service):
    """
    Holds the listening sockets and keeps C{count} workers serving on them.
    It is the L{netproxy.systemd.Readiness} of the main process's notifier.

    :param reactor: spawns the workers, and is the clock.
    :param count: how many workers.
    :param listen: the endpoint descriptions, in C{--listen} order.
    :param command: gives a worker's command line from its index.
    :param environ: the environment the workers' own is made from.
    :param shutdown_timeout: the workers' C{--shutdown-timeout}.
    :param set_exit_status: called with 1 when start-up fails after the
        reactor runs (L{netproxy.cli.exit_after_twistd} when L{None}).
    :param listen_with: opens a listening socket from a description and the
        reactor (L{hold}).
    """

    log = Logger()

    def __init__(self, reactor: Any, count: int, listen: list[str], command: Callable[[int], list[str]],
                 environ: Mapping[str, str], shutdown_timeout: float,
                 set_exit_status: Callable[[int], None] | None = None,
                 listen_with: Callable[[str, Any], Any] = hold) -> None:
        self._reactor = reactor
        self.count = count
        self._listen = listen
        self._command = command
        self._environ = environ
        self._shutdown_timeout = shutdown_timeout
        self._set_exit_status = set_exit_status
        self._listen_with = listen_with
        self.workers: list[WorkerProcess | None] = [None] * count
        self._attempts = [0] * count
        self._restarts: dict[int, IDelayedCall] = {}
        self._ports: list[Any] = []
        self._all_ready = False
        self._ready_waiters: list[Deferred[None]] = []
        # What the workers share (their metrics), made when they start.
        self.state = ""
        self.restarts = [0] * count

    def privilegedStartService(self) -> None:
        # Service named rather than super(), so mypy sees Twisted's untyped method.
        Service.privilegedStartService(self)
        # Here, as listeners do: a privileged port is bound before twistd
        # gives up its privileges, and one in use stops start-up.
        for description in self._listen:
            port = self._listen_with(description, self._reactor)
            self._ports.append(port)
            self.log.info("holding {description} (port {port}) for {count} workers", description=description,
                          port=getattr(port.getHost(), "port", "?"), count=self.count)

    def startService(self) -> None:
        Service.startService(self)
        # Private to this process and its workers (mode 0700).
        self.state = tempfile.mkdtemp(prefix="netproxy-workers-")
        for index in range(self.count):
            self._start(index)

    def _handoff(self, index: int) -> Worker:
        families = tuple("INET6" if isinstance(port.getHost(), IPv6Address) else "INET" for port in self._ports)
        return Worker(index, self.count, tuple(enumerate(families, FIRST_LISTENING)), CONTROL, self.state)

    def _start(self, index: int) -> None:
        self._restarts.pop(index, None)
        worker = WorkerProcess(self, index, self._reactor.seconds())
        handoff = self._handoff(index)
        descriptors: dict[int, int | str] = {0: "w", 1: 1, 2: 2, CONTROL[1]: "r"}
        for (descriptor, family), port in zip(handoff.listening, self._ports):
            descriptors[descriptor] = port.fileno()
        self.workers[index] = worker
        try:
            self._reactor.spawnProcess(worker, sys.executable, self._command(index),
                                       env=worker_environment(self._environ, handoff), childFDs=descriptors)
        except OSError as error:
            self.log.error("cannot start worker {index}: {error}", index=index, error=error)
            worker.exited = True
            self.worker_ended(worker, f"not started: {error}")
            return
        self.log.info("worker {index} started (pid {pid})", index=index, pid=worker.pid)

    def worker_ready(self, worker: WorkerProcess) -> None:
        """
        C{worker} reported that it listens.
        """
        self.log.info("worker {index} (pid {pid}) ready", index=worker.index, pid=worker.pid)
        if not self._all_ready and self.healthy():
            self._all_ready = True
            self.log.info("all {count} workers ready", count=self.count)
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def worker_ended(self, worker: WorkerProcess, status: str) -> None:
        """
        C{worker} has exited: start it again, unless the service stops or
        has not started yet.
        """
        index = worker.index
        if self.workers[index] is worker:
            self.workers[index] = None
        if not self.running:
            self.log.info("worker {index} (pid {pid}) exited ({status})", index=index, pid=worker.pid,
                          status=status)
            return
        if not self._all_ready:
            self.log.critical("worker {index} (pid {pid}) exited ({status}) before it was ready: stopping",
                              index=index, pid=worker.pid, status=status)
            self._give_up()
            return
        if self._reactor.seconds() - worker.started >= STABLE_AFTER:
            self._attempts[index] = 0
        delay = restart_delay(self._attempts[index])
        self._attempts[index] += 1
        self.restarts[index] += 1
        self._keep_counts(index)
        self.log.warn("worker {index} (pid {pid}) exited ({status}); starting it again in {delay:.1f} s",
                      index=index, pid=worker.pid, status=status, delay=delay)
        self._restarts[index] = self._reactor.callLater(delay, self._start, index)

    def _keep_counts(self, index: int) -> None:
        try:
            retire(self.state, index)
            write_restarts(self.state, dict(enumerate(self.restarts)))
        except OSError as error:
            self.log.error("could not keep worker {index}'s metrics: {error}", index=index, error=str(error))

    def _give_up(self) -> None:
        if self._set_exit_status is None:
            from netproxy.cli import exit_after_twistd

            exit_after_twistd(1)
        else:
            self._set_exit_status(1)
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass

    def when_ready(self) -> Deferred[None]:
        """
        :returns: a L{Deferred} that fires once every worker has listened.
        """
        if self._all_ready:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def healthy(self) -> bool:
        """
        :returns: whether every worker is running and listening.
        """
        return all(worker is not None and worker.ready and not worker.exited for worker in self.workers)

    def reload(self) -> Deferred[None]:
        """
        Forward C{SIGHUP} to every worker.

        :returns: a L{Deferred} firing once each has reported its reload,
            exited, or timed out.
        """
        live = [worker for worker in self.workers if worker is not None]
        self.log.info("forwarding SIGHUP to {count} workers", count=len(live))

        def report(results: list[bool]) -> None:
            self.log.info("{reloaded} of {count} workers reloaded: {indexes}", reloaded=sum(results),
                          count=len(live), indexes=[worker.index for worker, done in zip(live, results) if done])

        return gatherResults([worker.reload(self._reactor) for worker in live]).addCallback(report)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        live = [worker for worker in self.workers if worker is not None]
        self.log.info("stopping {count} workers", count=len(live))
        for worker in live:
            worker.signal("TERM")
        deadline = self._reactor.callLater(self._shutdown_timeout + STOP_GRACE, self._kill, live)

        def release(ignored: object) -> Deferred[None]:
            if deadline.active():
                deadline.cancel()
            # Closed last: until then the workers draining still hold the
            # socket open, and the main process's copy must not shut it
            # down under them.
            ports, self._ports = self._ports, []
            if self.state:
                shutil.rmtree(self.state, ignore_errors=True)
            return gatherResults([maybeDeferred(port.stopListening) for port in ports]).addCallback(lambda _: None)

        return gatherResults([worker.ended for worker in live]).addCallback(release)

    def _kill(self, workers: list[WorkerProcess]) -> None:
        for worker in workers:
            if not worker.exited:
                self.log.warn("worker {index} (pid {pid}) still running {timeout} s after SIGTERM: killed",
                              index=worker.index, pid=worker.pid, timeout=self._shutdown_timeout + STOP_GRACE)
                worker.signal("KILL")


def supervise(options: Any, reactor: Any, service: MultiService) -> SystemdNotifier:
    """
    Make C{service} the main process of C{options}' role: a L{Supervisor},
    and C{SIGHUP} forwarded to every worker.

    :param options: the parsed top-level options (C{argv}: the role's
        command line; C{parent}: twistd's options, when twistd parsed them).
    :returns: the notifier to attach: C{READY=1} once every worker listens,
        the watchdog only while they all do.
    """
    role = options.subOptions
    listen = role["listen"] if isinstance(role["listen"], list) else [role["listen"]]
    twistd = getattr(options, "parent", None) or {}
    supervisor = Supervisor(reactor, role["workers"], listen,
                            lambda index: worker_command(options.argv, twistd, index), os.environ,
                            role["shutdown-timeout"])
    service.addService(supervisor)
    service.addService(ReloadOnHangup([supervisor.reload], reactor))
    return SystemdNotifier(reactor, readiness=supervisor)


def role_process(options: Any, reactor: Any, service: MultiService,
                 build: Callable[[Any, Any], IService]) -> SystemdNotifier:
    """
    Put what this process runs of the role into C{service}: the role (built
    by C{build}) in a process of its own or in a worker, or the main process
    of C{--workers} above 1.

    :param options: the parsed top-level options.
    :param build: the role's builder, taking its options and the reactor.
    :returns: the notifier to attach to C{service} last.
    """
    role = options.subOptions
    if role.get("workers", 1) > 1 and role.get("worker") is None:
        return supervise(options, reactor, service)
    notifier = SystemdNotifier(reactor) if role.get("worker") is None else serve_as_worker(role, reactor)
    build(role, reactor).setServiceParent(service)
    return notifier
