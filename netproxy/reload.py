# -*- test-case-name: tests.test_reload -*-
"""
Re-read configuration files on SIGHUP.

The signal handler only schedules the work: reloading runs later on the
reactor thread, where every protocol reads the rules it swaps.
"""

import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.python.failure import Failure

from netproxy.escaping import Logger

_Handler = Callable[[int, FrameType | None], Any] | int | None


class ReloadObserver(Protocol):
    """
    What is told about each reload (L{netproxy.systemd.SystemdNotifier}).
    """

    def reloading(self) -> None:
        """
        A reload begins: no reloader has run yet.
        """

    def reloaded(self) -> None:
        """
        Every reloader has applied or refused its new configuration.
        """


class _Signals(Protocol):
    """
    What L{ReloadOnHangup} uses of the L{signal} module.
    """

    @property
    def SIGHUP(self) -> int:
        ...

    @property
    def SIG_DFL(self) -> int:
        ...

    def signal(self, signalnum: int, handler: _Handler, /) -> _Handler:
        ...


class ReloadOnHangup(Service):
    """
    While running, calls each reload callable in turn whenever the process
    receives C{SIGHUP}.

    :param reloaders: callables taking no argument, returning anything or a
        L{Deferred}; each one keeps its old configuration when its new one
        is bad (see L{netproxy.rules_file.RulesFile}).
    :param reactor: provides C{callFromThread}.
    :param signals: the L{signal} module, or a fake with C{signal},
        C{SIGHUP} and C{SIG_DFL}.
    :ivar observers: the L{ReloadObserver}s told about each reload.
    """

    log = Logger()

    def __init__(self, reloaders: Iterable[Callable[[], object]], reactor: Any, signals: _Signals = signal) -> None:
        self._reloaders = list(reloaders)
        self._reactor = reactor
        self._signals = signals
        self._previous: _Handler = None
        self.observers: list[ReloadObserver] = []

    def privilegedStartService(self) -> None:
        # Before any listener announces itself, so a SIGHUP sent as soon as
        # the role listens is never the default (fatal) one.
        super().privilegedStartService()
        self._install()

    def startService(self) -> None:
        super().startService()
        self._install()

    def _install(self) -> None:
        if self._previous is None:
            self._previous = self._signals.signal(self._signals.SIGHUP, self._hangup)

    def stopService(self) -> None:
        self._signals.signal(self._signals.SIGHUP, self._previous or self._signals.SIG_DFL)
        self._previous = None
        return super().stopService()

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.reload)

    def reload(self) -> Deferred[None]:
        """
        Run every reloader now; one that raises (or returns a L{Deferred}
        that fails) is logged and the others still run.

        :returns: a L{Deferred} that fires once every reloader is done, when
            the observers have been told.
        """
        if self._reloaders:
            self.log.info("SIGHUP received: reloading configuration")
        else:
            self.log.info("SIGHUP received: this role has nothing to reload")
        for observer in self.observers:
            observer.reloading()
        done = []
        for reloader in self._reloaders:
            done.append(maybeDeferred(reloader).addErrback(self._failed, reloader))

        def tell_observers(ignored: object) -> None:
            for observer in self.observers:
                observer.reloaded()

        return gatherResults(done).addCallback(tell_observers)

    def _failed(self, failure: Failure, reloader: Callable[[], object]) -> None:
        self.log.failure("reloading with {reloader!r} failed", failure, reloader=reloader)
