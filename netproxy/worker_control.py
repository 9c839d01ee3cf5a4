# -*- test-case-name: tests.test_worker_control -*-
"""
The worker's side of a role served by several processes
(L{netproxy.workers} is the main process's side).

A worker serves the role as one process would, with two differences: it
listens on the sockets its main process opened (inherited descriptors,
adopted with L{IReactorSocket.adoptStreamPort}), and it tells the main
process, not systemd, how it is doing: the L{SystemdNotifier} that would
talk to C{$NOTIFY_SOCKET} sends the same messages (C{READY=1},
C{RELOADING=1}, C{STOPPING=1}) down a pipe instead, each ended by a NUL
byte.  Workers are never given C{$NOTIFY_SOCKET}, so the unit needs no
C{NotifyAccess=all}.

The other pipe, from the main process, carries nothing; its end of file
means the main process is gone (killed, say), and the worker then stops as
on C{SIGTERM} instead of serving on, unsupervised, a port nobody can
restart.
"""

import socket
from typing import Any

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from netproxy.escaping import Logger
from netproxy.proxy_protocol import proxied_like
from netproxy.systemd import SystemdNotifier
from netproxy.worker_options import Worker

# Ends each report: notification messages are text lines, never NUL.
REPORT_END = b"\0"


class MainProcessLink(Protocol):
    """
    A worker's two pipes to its main process, as a L{netproxy.systemd.Channel}.

    :param reactor: stopped when the main process goes away.
    :ivar address: what the log calls the other end.
    """

    log = Logger()
    address = "the main process"

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._stopping = False

    def send(self, message: str) -> None:
        """
        Report C{message} (C{NAME=value} lines) to the main process.
        """
        if self.transport is not None and self.connected:
            self.transport.write(message.encode("utf-8") + REPORT_END)

    def close_when_sent(self) -> None:
        """
        The worker stops (C{STOPPING=1} was the last report).  The pipes stay
        open until it exits, which is how the main process learns the rest;
        the reactor closes them as it stops, which is no news.
        """
        self._stopping = True

    def dataReceived(self, data: bytes) -> None:
        """
        The main process sends nothing; anything is ignored.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self._stopping:
            return
        self._stopping = True
        self.log.warn("the main process has gone away: this worker stops")
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass


class SharedSocketEndpoint(AdoptedStreamServerEndpoint):
    """
    An inherited listening socket that the other workers accept on too.

    Every worker's reactor wakes for a burst of connections on the shared
    socket, and the first to run accepts as many as Twisted's port allows
    (100 at first, growing by 20): one worker would take a whole burst
    while the others idle.  A port listening here accepts at most
    L{ACCEPTS_PER_WAKE} at a time, leaving the rest of the burst to the
    others, and to itself on its next turn.
    """

    def listen(self, factory: Any) -> Any:
        return super().listen(factory).addCallback(_share_accepts)  # type: ignore[no-untyped-call]


#: Connections a worker accepts per wake-up of its reactor.
ACCEPTS_PER_WAKE = 4


def _share_accepts(port: Any) -> Any:
    accept = port.doRead

    def doRead() -> Any:
        port.numberAccepts = min(port.numberAccepts, ACCEPTS_PER_WAKE)
        return accept()

    port.doRead = doRead
    return port


def adopted_endpoints(worker: Worker, reactor: Any) -> list[AdoptedStreamServerEndpoint]:
    """
    :returns: an endpoint for each listening socket the worker inherited, in
        C{--listen} order.
    """
    return [SharedSocketEndpoint(reactor, descriptor, getattr(socket, "AF_" + family))  # type: ignore[no-untyped-call]
            for descriptor, family in worker.listening]


def serve_as_worker(options: Any, reactor: Any,
                    link_pipes: Any = StandardIO) -> SystemdNotifier:
    """
    Make a role's options those of a worker, before the role is built: its
    C{--listen} becomes the inherited sockets.

    :param options: the role's options, with C{options["worker"]} set.
    :param reactor: the reactor, to adopt the sockets with.
    :param link_pipes: connects a protocol to two descriptors (Twisted's
        L{StandardIO}, whose C{stdin} and C{stdout} may be any descriptor).
    :returns: the notifier to attach to the role's service: it reports to
        the main process.
    """
    worker: Worker = options["worker"]
    listen = options["listen"] if isinstance(options["listen"], list) else [options["listen"]]
    endpoints = [proxied_like(description, endpoint, reactor)
                 for description, endpoint in zip(listen, adopted_endpoints(worker, reactor))]
    # The relay has one --listen, the HTTP proxy a list of them.
    options["listen"] = endpoints if isinstance(options["listen"], list) else endpoints[0]
    link = MainProcessLink(reactor)
    reads, writes = worker.control
    link_pipes(link, stdin=reads, stdout=writes, reactor=reactor)
    # No environment: no $NOTIFY_SOCKET, no watchdog of its own.
    return SystemdNotifier(reactor, environ={}, channel=link)
