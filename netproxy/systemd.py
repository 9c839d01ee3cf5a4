# -*- test-case-name: tests.test_systemd,tests.integration.test_systemd -*-
"""
Tell systemd how a role is doing: C{READY=1}, C{RELOADING=1}, C{STOPPING=1}
and watchdog pings, as C{sd_notify(3)} sends them.

The protocol is one datagram per message on the unix socket named by
C{$NOTIFY_SOCKET} (a path, or C{@name} for the abstract namespace), so no
libsystemd is needed.  Messages go out from the reactor on a non-blocking
socket; one the socket cannot take right now waits for a short retry, and a
socket that has gone away costs one warning, never the role.  Without
C{$NOTIFY_SOCKET} every call here does nothing.

Socket activation needs nothing from this module: Twisted's
C{systemd:domain=INET:index=0} endpoints adopt the sockets systemd passes.

The same messages also travel from each worker process to the main one
(L{netproxy.worker_control}), which alone talks to systemd and announces the
service ready, and its watchdog alive, only while every worker is
(L{Readiness}).
"""

import errno
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from twisted.application.service import IService, IServiceCollection, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall

from netproxy.escaping import Logger
from netproxy.reload import ReloadOnHangup

# Seconds before a message the socket could not take is offered again, and
# how many such messages are kept; more are dropped with a warning.
RETRY_DELAY = 0.05
MAX_PENDING = 16

# The socket is full: the message waits for a retry.
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)

_S = TypeVar("_S")


def notify_address(value: str | None) -> str | None:
    """
    Turn the value of C{$NOTIFY_SOCKET} into a socket address.

    :param value: the variable's text, or L{None} when it is not set.
    :returns: the address for C{sendto} (C{@name} becomes the abstract
        C{"\\0name"}), or L{None} when there is nothing usable to notify.
    """
    if value and value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value and value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """
    How often to send C{WATCHDOG=1}: half of C{$WATCHDOG_USEC}, as
    C{sd_watchdog_enabled(3)} advises, when the watchdog is meant for this
    process (C{$WATCHDOG_PID}, when set, names it).

    :param environ: the environment, a mapping.
    :param pid: this process's id.
    :returns: seconds, or L{None} when no watchdog is asked for.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""), 10)
    except ValueError:
        return None
    if usec <= 0:
        return None
    watched = environ.get("WATCHDOG_PID")
    if watched and watched.strip() != str(pid):
        return None
    return usec / 2 / 1e6


def monotonic_usec() -> int:
    """
    :returns: C{CLOCK_MONOTONIC} in microseconds, the clock systemd compares
        C{MONOTONIC_USEC=} with.
    """
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _datagram_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


class NotifySocket:
    """
    Sends messages to systemd's notification socket, one datagram each, in
    order, without ever blocking the reactor.

    :param address: where to send (see L{notify_address}).
    :param clock: provides C{callLater}, for retries.
    :param make_socket: makes the non-blocking unix datagram socket.
    """

    log = Logger()

    def __init__(self, address: str, clock: IReactorTime,
                 make_socket: Callable[[], socket.socket] = _datagram_socket) -> None:
        self.address = address
        self._clock = clock
        self._make_socket = make_socket
        self._socket: socket.socket | None = None
        self._pending: list[bytes] = []
        self._retry: IDelayedCall | None = None
        self._warned = False
        self._closing = False

    def send(self, message: str) -> None:
        """
        Send C{message} now, or as soon as the socket takes it.

        :param message: a L{str} of C{NAME=value} lines.
        """
        if len(self._pending) >= MAX_PENDING:
            self._warn("systemd notification socket {address} is not reading; dropped {notification!r}",
                       notification=message)
            return
        self._pending.append(message.encode("utf-8"))
        self._closing = False
        if self._retry is None:
            self._flush()

    def _flush(self) -> None:
        self._retry = None
        while self._pending:
            try:
                if self._socket is None:
                    self._socket = self._make_socket()
                self._socket.sendto(self._pending[0], self.address)
            except OSError as error:
                if error.errno in _FULL:
                    self._retry = self._clock.callLater(RETRY_DELAY, self._flush)
                    return
                # Gone (ENOENT, ECONNREFUSED) or forbidden: this message is
                # lost, later ones are still tried (systemd may be back).
                self._warn("systemd notification socket {address} unusable ({error}); "
                           "notifications are dropped", error=error.strerror or str(error))
            del self._pending[0]
        if self._closing:
            self.close()

    def _warn(self, text: str, **fields: object) -> None:
        if not self._warned:
            self._warned = True
            self.log.warn(text, address=_printable(self.address), **fields)

    def close_when_sent(self) -> None:
        """
        Close the socket once every message waiting has been sent (or
        dropped); a later L{send} opens a new one.
        """
        self._closing = True
        if self._retry is None:
            self._flush()

    def close(self) -> None:
        """
        Drop what is still waiting and close the socket.
        """
        self._closing = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._pending = []
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Channel(Protocol):
    """
    Where a L{SystemdNotifier} sends its messages: a L{NotifySocket}, or a
    worker's link to its main process.

    :ivar address: what the log calls it.
    """

    address: str

    def send(self, message: str) -> None:
        """
        Send C{message} (C{NAME=value} lines) now or as soon as possible.
        """

    def close_when_sent(self) -> None:
        """
        Close once every message waiting has gone.
        """


class Readiness(Protocol):
    """
    What a notifier asks before it tells systemd that the service is ready
    and alive: the main process of several workers
    (L{netproxy.workers.Supervisor}) is ready once every worker is.
    """

    def when_ready(self) -> Deferred[None]:
        """
        :returns: a L{Deferred} that fires once the service is ready.
        """

    def healthy(self) -> bool:
        """
        :returns: whether a watchdog ping may go out now.
        """


def _printable(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


class SystemdNotifier(Service):
    """
    A role's link to systemd.  Make it the last child of the role's
    L{MultiService} (see L{attach}): it then starts once every listener
    listens and every other service has started, and sends C{READY=1} as
    soon as the reactor runs; it is stopped first, so C{STOPPING=1} goes out as shutdown begins, before
    the listeners close and connections drain.  While running it sends
    C{WATCHDOG=1} every half C{$WATCHDOG_USEC}, and announces reloads
    (L{reloading}, L{reloaded}).

    :param reactor: provides C{callWhenRunning}, and C{callLater} for the
        watchdog and retries.
    :param environ: the environment to read C{NOTIFY_SOCKET},
        C{WATCHDOG_USEC} and C{WATCHDOG_PID} from; the process's when
        L{None}.  Nothing is removed from it.
    :param pid: this process's id (for C{WATCHDOG_PID}); L{os.getpid} when
        L{None}.
    :param monotonic: returns C{CLOCK_MONOTONIC} in microseconds.
    :param make_socket: makes the non-blocking unix datagram socket.
    :param channel: where to send instead of C{$NOTIFY_SOCKET}, or L{None}.
    :param readiness: what C{READY=1} waits for, and what each watchdog
        ping asks first; L{None} when the started services are all there is.
    """

    log = Logger()

    def __init__(self, reactor: Any, environ: Mapping[str, str] | None = None, pid: int | None = None,
                 monotonic: Callable[[], int] = monotonic_usec,
                 make_socket: Callable[[], socket.socket] = _datagram_socket,
                 channel: Channel | None = None, readiness: Readiness | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = notify_address(environ.get("NOTIFY_SOCKET"))
        self.socket: Channel | None = channel
        if channel is None and address is not None:
            self.socket = NotifySocket(address, reactor, make_socket)
        self.readiness = readiness
        self.watchdog_interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._reactor = reactor
        self._monotonic = monotonic
        self._watchdog: LoopingCall | None = None

    def attach(self, service: MultiService) -> "SystemdNotifier":
        """
        Join C{service} as its last child, announcing the reloads of every
        L{ReloadOnHangup} in it.  A role with nothing to reload gets one
        with no reloaders, so C{systemctl reload} (a C{SIGHUP}) is answered
        instead of killing the role.

        :param service: the role's L{MultiService}.
        :returns: this notifier.
        """
        reloads = list(_find(service, ReloadOnHangup))
        if not reloads:
            reloads = [ReloadOnHangup([], self._reactor)]
            reloads[0].setServiceParent(service)
        for reload in reloads:
            reload.observers.append(self)
        self.setServiceParent(service)
        return self

    def notify(self, message: str) -> None:
        """
        Send C{message} (C{NAME=value} lines) to systemd, if it listens.
        """
        if self.socket is not None:
            self.socket.send(message)

    def startService(self) -> None:
        super().startService()
        if self.socket is not None:
            # twistd starts the services before the reactor runs: READY=1
            # waits until it does, after the services' own callWhenRunning
            # (ExitCleanlyOnTerm's SIGTERM handler) have run.
            self._reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        if self.running and self.socket is not None and self.readiness is not None:
            self.readiness.when_ready().addCallback(lambda ignored: self._announce())
        else:
            self._announce()

    def _announce(self) -> None:
        if not self.running or self.socket is None:
            return
        peer = self.socket.address
        if isinstance(self.socket, NotifySocket):
            peer = "systemd at " + _printable(peer)
        self.log.info("notifying {peer}: ready", peer=peer)
        self.notify("READY=1")
        if self.watchdog_interval is not None:
            self._watchdog = LoopingCall(self._ping)
            self._watchdog.clock = self._reactor
            self._watchdog.start(self.watchdog_interval, now=True)

    def _ping(self) -> None:
        # A ping skipped while a worker is down is harmless; many in a row
        # (a worker that cannot start again) let systemd restart the service.
        if self.readiness is None or self.readiness.healthy():
            self.notify("WATCHDOG=1")

    def stopService(self) -> None:
        super().stopService()
        # systemd stops watching once it knows we stop.
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self.socket is not None:
            self.socket.send("STOPPING=1")
            self.socket.close_when_sent()

    def reloading(self) -> None:
        """
        A reload begins: C{RELOADING=1} with the time, as
        C{Type=notify-reload} requires.
        """
        if self.running:
            self.notify(f"RELOADING=1\nMONOTONIC_USEC={self._monotonic()}")

    def reloaded(self) -> None:
        """
        A reload has been applied or refused: C{READY=1} again.
        """
        if self.running:
            self.notify("READY=1")


def _find(service: IService, kind: type[_S]) -> Iterator[_S]:
    if isinstance(service, kind):
        yield service
    if IServiceCollection.providedBy(service):
        for child in service:
            yield from _find(child, kind)
