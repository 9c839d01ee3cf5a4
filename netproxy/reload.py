"""
Re-read configuration files on SIGHUP.

The signal handler only schedules the work: reloading runs later on the
reactor thread, where every protocol reads the rules it swaps.
"""

import signal

from twisted.application.service import Service
from twisted.logger import Logger


class ReloadOnHangup(Service):
    """
    While running, calls each reload callable in turn whenever the process
    receives C{SIGHUP}.

    :param reloaders: callables taking no argument; each one keeps its old
        configuration when its new one is bad (see L{netproxy.acl.RulesFile}).
    :param reactor: provides C{callFromThread}.
    :param signals: the L{signal} module, or a fake with C{signal} and C{SIGHUP}.
    """

    log = Logger()

    def __init__(self, reloaders, reactor, signals=signal):
        self._reloaders = list(reloaders)
        self._reactor = reactor
        self._signals = signals
        self._previous = None

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
        Run every reloader now; one that raises is logged and the others
        still run.
        """
        self.log.info("SIGHUP received: reloading configuration")
        for reloader in self._reloaders:
            try:
                reloader()
            except Exception:
                self.log.failure("reloading with {reloader!r} failed", reloader=reloader)
