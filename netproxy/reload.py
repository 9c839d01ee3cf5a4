"""
Re-read configuration files on SIGHUP.

The signal handler only schedules the work: reloading runs later on the
reactor thread, where every protocol reads the rules it swaps.
"""

import signal

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.logger import Logger


class ReloadOnHangup(Service):
    """
    While running, calls each reload callable in turn whenever the process
    receives C{SIGHUP}.

    :param reloaders: callables taking no argument; each one keeps its old
        configuration when its new one is bad (see L{netproxy.acl.RulesFile}).
    :param reactor: provides C{callFromThread}.
    :param signals: the L{signal} module, or a fake with C{signal} and C{SIGHUP}.
    :ivar observers: objects told about each reload: C{reloading()} before
        the first reloader runs, C{reloaded()} once every one has applied or
        refused its new configuration (L{netproxy.systemd.SystemdNotifier}).
    """

    log = Logger()

    def __init__(self, reloaders, reactor, signals=signal):
        self._reloaders = list(reloaders)
        self._reactor = reactor
        self._signals = signals
        self._previous = None
        self.observers = []

    def privilegedStartService(self):
        # Before any listener announces itself, so a SIGHUP sent as soon as
        # the role listens is never the default (fatal) one.
        super().privilegedStartService()
        self._install()

    def startService(self):
        super().startService()
        self._install()

    def _install(self):
        if self._previous is None:
            self._previous = self._signals.signal(self._signals.SIGHUP, self._hangup)

    def stopService(self):
        self._signals.signal(self._signals.SIGHUP, self._previous or self._signals.SIG_DFL)
        self._previous = None
        return super().stopService()

    def _hangup(self, signum, frame):
        self._reactor.callFromThread(self.reload)

    def reload(self):
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
            done.append(maybeDeferred(reloader).addErrback(
                lambda failure, reloader=reloader: self.log.failure(
                    "reloading with {reloader!r} failed", failure, reloader=reloader)))

        def tell_observers(ignored):
            for observer in self.observers:
                observer.reloaded()

        return gatherResults(done).addCallback(tell_observers)
