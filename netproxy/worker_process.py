# -*- test-case-name: tests.test_worker_process -*-
"""
One worker process, as the main process of a role served by several
(L{netproxy.workers}) starts it and hears from it: its command line and
environment, and its reports (C{READY=1} once it listens, C{RELOADING=1}
then C{READY=1} around a reload, C{STOPPING=1}), read from the pipe the
worker's L{netproxy.worker_control.MainProcessLink} writes to.
"""

import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from netproxy.escaping import Logger
from netproxy.worker_control import REPORT_END
from netproxy.worker_options import WORKER_VARIABLE, Worker

# Seconds a worker may take to report a forwarded reload before it is
# counted as not reloaded (and systemd hears READY=1 all the same).
RELOAD_TIMEOUT = 30.0
# The longest report a worker sends; more without an end is dropped.
MAX_REPORT = 4096

# Where a worker finds what the main process gives it: it reads descriptor
# 0 (end of file when the main process is gone), writes its reports to 3,
# and finds the listening sockets from 4 on, in --listen order.
CONTROL = (0, 3)
FIRST_LISTENING = 4
# What systemd gives the main process alone.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# A worker starts without pyOpenSSL: Twisted's TCP module loads it (and
# cryptography with it, 14 MiB of each worker's memory) only to offer TLS
# transports, and no role that runs in workers speaks TLS itself (HTTPS goes
# through CONNECT tunnels untouched; --listen must be plain TCP).
TWISTD = ("import sys; sys.modules['OpenSSL'] = None; "
          "from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()")


def worker_command(role_argv: list[str], twistd_options: Mapping[str, Any], index: int) -> list[str]:
    """
    The command line of a worker: C{twistd --nodaemon --pidfile= netproxy}
    and the main process's own role arguments, run by this interpreter.

    :param role_argv: the role and its arguments, as the main process got them.
    :param twistd_options: twistd's parsed options (C{logger}, C{logfile},
        C{nodaemon}).
    :param index: the worker's number.
    :returns: the argument list, the interpreter first.
    """
    argv = [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile="]
    if twistd_options.get("logger"):
        argv += ["--logger", twistd_options["logger"]]
    logfile = twistd_options.get("logfile")
    if logfile is None and not twistd_options.get("nodaemon", True):
        logfile = "twistd.log"
    # A log file of its own: twistd's log files are not opened for appending
    # and rotate on their own, so two processes cannot share one.  Without
    # one, a worker writes to the main process's standard output (the
    # journal, under systemd).
    if logfile == os.devnull:
        # Nowhere is nowhere for the workers too, not a file beside the device.
        argv += ["--logfile", os.devnull]
    elif logfile and logfile != "-":
        argv += ["--logfile", f"{logfile}.worker{index}"]
    return [*argv, "netproxy", *role_argv]


def worker_environment(environ: Mapping[str, str], worker: Worker) -> dict[str, str]:
    """
    :returns: C{environ} without what systemd meant for the main process
        alone, and with L{WORKER_VARIABLE} describing C{worker}.
    """
    result = {name: value for name, value in environ.items() if name not in SYSTEMD_VARIABLES}
    result[WORKER_VARIABLE] = worker.to_environ()
    return result


class Supervising(Protocol):
    """
    What a L{WorkerProcess} tells (L{netproxy.workers.Supervisor}).
    """

    def worker_ready(self, worker: "WorkerProcess") -> None:
        """
        C{worker} listens: it reported C{READY=1} for the first time.
        """

    def worker_ended(self, worker: "WorkerProcess", status: str) -> None:
        """
        C{worker} has exited; C{status} says how, in words.
        """


def _status(reason: BaseException) -> str:
    signal = getattr(reason, "signal", None)
    return f"killed by signal {signal}" if signal is not None else f"exit status {getattr(reason, 'exitCode', None)}"


class WorkerProcess(ProcessProtocol):
    """
    One worker process as the main process sees it: its reports, its reload,
    its end.

    :param supervisor: told when it is ready and when it has ended.
    :param index: its number.
    :param started: when it was started, in the supervisor's clock's seconds.

    :ivar ready: it has reported C{READY=1} (it listens).
    :ivar ended: fires once it has exited.
    """

    log = Logger()

    def __init__(self, supervisor: Supervising, index: int, started: float) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = started
        self.pid: int | None = None
        self.ready = False
        self.exited = False
        self.ended: Deferred[None] = Deferred()
        self._reports = b""
        self._reload_waiters: list[Deferred[bool]] = []
        self._hangup_when_ready = False
        self._reload_begun = False

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != CONTROL[1]:
            return
        *reports, self._reports = (self._reports + data).split(REPORT_END)
        if len(self._reports) > MAX_REPORT:
            self.log.warn("worker {index} (pid {pid}) sent a report longer than {limit} bytes; dropped",
                          index=self.index, pid=self.pid, limit=MAX_REPORT)
            self._reports = b""
        for report in reports:
            self._report(report.decode("utf-8", "replace"))

    def _report(self, text: str) -> None:
        fields = dict(line.partition("=")[::2] for line in text.splitlines())
        if fields.get("READY") == "1":
            self._ready()
        elif fields.get("RELOADING") == "1":
            self._reload_begun = True
        elif fields.get("STOPPING") == "1":
            self.log.info("worker {index} (pid {pid}) is stopping", index=self.index, pid=self.pid)
        else:
            self.log.warn("worker {index} (pid {pid}) sent an unknown report {report!r}",
                          index=self.index, pid=self.pid, report=text[:200])

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.supervisor.worker_ready(self)
            if self._hangup_when_ready:
                self._hangup_when_ready = False
                self.signal("HUP")
        elif self._reload_begun:
            self._reload_begun = False
            self.log.info("worker {index} (pid {pid}) reloaded", index=self.index, pid=self.pid)
            self._reloaded(True)

    def reload(self, clock: Any) -> Deferred[bool]:
        """
        Forward C{SIGHUP}: at once to a worker that listens, as soon as it
        does to one still starting (whose handler may not be in place yet).

        :returns: a L{Deferred} firing with L{True} once the worker reported
            its reload done, L{False} if it exited or said nothing for
            L{RELOAD_TIMEOUT} seconds.
        """
        done: Deferred[bool] = Deferred()
        self._reload_waiters.append(done)
        if self.ready:
            self.signal("HUP")
        else:
            self._hangup_when_ready = True

        def timed_out(result: object, timeout: float) -> bool:
            self.log.warn("worker {index} (pid {pid}) did not report its reload within {timeout} s",
                          index=self.index, pid=self.pid, timeout=timeout)
            return False

        return done.addTimeout(RELOAD_TIMEOUT, clock, onTimeoutCancel=timed_out)

    def _reloaded(self, result: bool) -> None:
        waiters, self._reload_waiters = self._reload_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(result)

    def signal(self, name: str) -> None:
        """
        Send the signal C{name} (C{"TERM"}, C{"HUP"}, C{"KILL"}) unless the
        worker has exited already.
        """
        if self.transport is None:
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def processEnded(self, reason: Failure) -> None:
        self.exited = True
        self._reloaded(False)
        self.supervisor.worker_ended(self, _status(reason.value))
        self.ended.callback(None)
