"""
Tests for L{netproxy.worker_process}: how a worker is started, and its
reports as the main process reads them.
"""

import os
import subprocess
import sys

from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.worker_options import WORKER_VARIABLE, Worker, worker_from_environ
from netproxy.worker_process import TWISTD, WorkerProcess, worker_command, worker_environment


class CommandTests(SynchronousTestCase):
    """
    A worker runs twistd in the foreground with the main process's role arguments.
    """

    def test_foreground(self):
        """
        The interpreter of the main process runs twistd -n, no pidfile, then netproxy and the role arguments unchanged.
        """
        self.assertEqual(worker_command(["http", "--workers", "2"], {"nodaemon": True}, 0),
                         [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", "netproxy", "http", "--workers",
                          "2"])

    def test_logger_passed(self):
        """
        A --logger of the main process is the workers' too.
        """
        command = worker_command(["relay"], {"nodaemon": True, "logger": "netproxy.log_observers.json_observer"}, 1)
        self.assertEqual(command[5:7], ["--logger", "netproxy.log_observers.json_observer"])

    def test_logfile_per_worker(self):
        """
        With a --logfile (or daemonized, twistd.log), each worker writes a file of its own beside it.
        """
        self.assertIn("/var/log/np.log.worker1", worker_command(["relay"], {"logfile": "/var/log/np.log"}, 1))
        self.assertIn("twistd.log.worker0", worker_command(["relay"], {"nodaemon": False}, 0))
        self.assertNotIn("--logfile", worker_command(["relay"], {"nodaemon": True, "logfile": "-"}, 0))

    def test_logfile_devnull(self):
        """
        --logfile /dev/null sends the workers' logs nowhere too: no /dev/null.worker0 file is created in /dev.
        """
        command = worker_command(["relay"], {"nodaemon": True, "logfile": os.devnull}, 1)
        self.assertEqual(command[command.index("--logfile") + 1], os.devnull)


class EnvironmentTests(SynchronousTestCase):
    """
    A worker's environment is the main process's, less systemd's variables, plus its place.
    """

    def test_environment(self):
        """
        NOTIFY_SOCKET and the other systemd variables are left out; the place round-trips.
        """
        worker = Worker(0, 2, ((4, "INET"),), (0, 3), "/run/netproxy-workers-test")
        environ = worker_environment({"NOTIFY_SOCKET": "@x", "LISTEN_FDS": "1", "HOME": "/root"}, worker)
        self.assertEqual(sorted(environ), ["HOME", WORKER_VARIABLE])
        self.assertEqual(worker_from_environ(environ), worker)


class Recorder:
    def __init__(self):
        self.ready, self.ended = [], []

    def worker_ready(self, worker):
        self.ready.append(worker)

    def worker_ended(self, worker, status):
        self.ended.append(status)


class Transport:
    pid = 42

    def __init__(self):
        self.signals = []
        self.gone = False

    def signalProcess(self, name):
        if self.gone:
            raise ProcessExitedAlready()
        self.signals.append(name)


class WorkerProcessTests(SynchronousTestCase):
    """
    One worker's reports and end.
    """

    def setUp(self):
        self.supervisor = Recorder()
        self.worker = WorkerProcess(self.supervisor, 0, 0.0)
        self.transport = Transport()
        self.worker.makeConnection(self.transport)

    def test_pid(self):
        """
        The worker knows its pid once spawned.
        """
        self.assertEqual(self.worker.pid, 42)

    def test_ready_told_once(self):
        """
        Only the first READY=1 is news to the supervisor; later ones end reloads.
        """
        self.worker.childDataReceived(3, b"READY=1\0READY=1\0")
        self.assertEqual(self.supervisor.ready, [self.worker])

    def test_ended(self):
        """
        The end is described in words and fires ended.
        """
        self.worker.processEnded(Failure(ProcessTerminated(None, 9)))
        self.assertEqual(self.supervisor.ended, ["killed by signal 9"])
        self.successResultOf(self.worker.ended)
        self.assertTrue(self.worker.exited)

    def test_signal_after_exit(self):
        """
        Signalling a worker that has just exited is no error.
        """
        self.transport.gone = True
        self.worker.signal("TERM")
        self.assertEqual(self.transport.signals, [])

    def test_invalid_utf8(self):
        """
        Bytes that are not UTF-8 make an unknown report, not a crash.
        """
        self.worker.childDataReceived(3, b"\xff\xfe=1\0")
        self.assertEqual(self.supervisor.ready, [])


class LightWorkerTests(SynchronousTestCase):
    """A worker's interpreter leaves pyOpenSSL out."""

    def test_no_tls_library(self):
        """The command a worker runs imports Twisted's reactor without loading pyOpenSSL or cryptography."""
        probe = TWISTD.split("from twisted.scripts.twistd")[0] + (
            "import twisted.internet.reactor; "
            "print(sorted(m for m, v in sys.modules.items() if v and m.split('.')[0] in ('OpenSSL', 'cryptography')))")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        self.assertEqual(result.stdout.strip(), "[]")
