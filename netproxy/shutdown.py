# -*- test-case-name: tests.test_shutdown,tests.integration.test_ack -*-
"""
A clean exit on SIGTERM.

twistd, on SIGTERM, stops the reactor and then kills its own process with
the same signal, so the role would end "killed by signal 15" where service
managers expect exit status 0 after a clean stop.  Once the reactor runs,
its own handler stops it as usual (the services' C{stopService} run,
connections drain); this service then forgets the signal the reactor
recorded, so twistd exits 0.  Before the reactor runs, when Python's default
would kill the process at once, this service's own handler queues the same
clean stop.

Twisted offers no public way to do this.  twistd decides how to end from the
reactor's C{_exitSignal} (C{twisted.application.app.ApplicationRunner.startReactor}
copies it once C{reactor.run()} returns, C{twisted.scripts.twistd.runApp}
kills the process with it), and nothing between the two is public: twistd
calls C{reactor.run()} itself, so the reactor's handlers cannot be left out,
and replacing the reactor's handler once it is installed leaves a window in
which a SIGTERM reaches it anyway (a signal sent as soon as a listener
announced itself did, about one time in five).  So this module writes that
private attribute, and C{setup.cfg} pins the Twisted releases it is known to
work with.  Two kinds of test guard the pin: L{tests.test_shutdown} checks
that the installed reactor still records the signal there, and the
integration tests (C{test_sigterm_exits_zero} in
L{tests.integration.test_ack} and L{tests.integration.test_relay}) send a
real C{twistd} SIGTERM and expect exit status 0.
"""

import signal
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from twisted.application.service import Service

from netproxy.escaping import Logger


class _ExitSignalReactor(Protocol):
    """
    What L{ExitCleanlyOnTerm} uses of the reactor.
    """

    _exitSignal: int | None

    def addSystemEventTrigger(self, phase: str, eventType: str, callable: object, /) -> object:
        ...

    def callFromThread(self, callable: object, /) -> None:
        ...

    def stop(self) -> None:
        ...


class _Signals(Protocol):
    """
    What L{ExitCleanlyOnTerm} uses of the L{signal} module.
    """

    @property
    def SIGTERM(self) -> int:
        ...

    def signal(self, signalnum: int, handler: Callable[[int, FrameType | None], None], /) -> object:
        ...


class ExitCleanlyOnTerm(Service):
    """
    Makes a SIGTERM a clean stop, with exit status 0.  Put it first in its
    L{MultiService}, so its handler is in place before any listener starts.

    :param reactor: the reactor, with C{addSystemEventTrigger},
        C{callFromThread}, C{stop} and the C{_exitSignal} twistd reads.
    :param signals: the L{signal} module, or a fake with C{signal} and C{SIGTERM}.
    """

    log = Logger()

    def __init__(self, reactor: _ExitSignalReactor, signals: _Signals = signal) -> None:
        self._reactor = reactor
        self._signals = signals

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        # Before any listener announces itself: a SIGTERM that comes before
        # the reactor runs queues a clean stop.
        self._signals.signal(self._signals.SIGTERM, self._terminate)

    def startService(self) -> None:
        super().startService()
        # twistd reads the signal to die of once the reactor has stopped,
        # after the shutdown event.
        self._reactor.addSystemEventTrigger("after", "shutdown", self._forget_term)

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        self.log.info("Received SIGTERM, shutting down.")
        self._reactor.callFromThread(self._reactor.stop)

    def _forget_term(self) -> None:
        if self._reactor._exitSignal == self._signals.SIGTERM:
            self._reactor._exitSignal = None
