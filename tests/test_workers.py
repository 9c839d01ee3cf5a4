"""
Tests for L{netproxy.workers}: the main process of a role served by
several workers, driven with fake processes and a L{Clock}.
"""

import json
import os
import shutil

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.reload import ReloadOnHangup
from netproxy.systemd import SystemdNotifier
from netproxy.worker_options import WORKER_VARIABLE
from netproxy.worker_process import RELOAD_TIMEOUT
from netproxy.workers import STABLE_AFTER, STOP_GRACE, Supervisor, hold, restart_delay, role_process, supervise


class FakeProcess:
    """
    A spawned worker: records signals, ends when the test says.
    """

    def __init__(self, protocol, pid, argv, env, child_fds):
        self.protocol = protocol
        self.pid = pid
        self.argv = argv
        self.env = env
        self.child_fds = child_fds
        self.signals = []
        self.ended = False

    def signalProcess(self, name):
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(name)

    def report(self, *messages):
        """
        The worker writes C{messages} to its report pipe.
        """
        self.protocol.childDataReceived(3, b"".join(message.encode() + b"\0" for message in messages))

    def end(self, code=0, signal=None):
        self.ended = True
        reason = ProcessDone(0) if code == 0 and signal is None else ProcessTerminated(code, signal)
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    """
    A clock that spawns L{FakeProcess}es and can be stopped.
    """

    def __init__(self):
        super().__init__()
        self.processes = []
        self.stopped = 0
        self.refuse_spawn = None

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None):
        if self.refuse_spawn is not None:
            raise self.refuse_spawn
        process = FakeProcess(protocol, 1000 + len(self.processes), args, env, childFDs)
        self.processes.append(process)
        protocol.makeConnection(process)
        return process

    def stop(self):
        self.stopped += 1


class FakePort:
    """
    The main process's copy of a listening socket.
    """

    def __init__(self, fileno, address):
        self._fileno = fileno
        self.address = address
        self.closed = False

    def getHost(self):
        return self.address

    def fileno(self):
        return self._fileno

    def stopListening(self):
        self.closed = True


def fake_hold(description, reactor):
    if description.startswith("tcp6:"):
        return FakePort(11, IPv6Address("TCP", "::1", 8081))
    return FakePort(10, IPv4Address("TCP", "127.0.0.1", 8080))


ENVIRON = {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "1000", "LISTEN_FDS": "1",
           "LISTEN_PID": "1", "LISTEN_FDNAMES": "x", "WATCHDOG_PID": "1", "CACHE_DIRECTORY": "/var/cache/x"}


class SupervisorTestCase(SynchronousTestCase):
    """
    Builds a started supervisor of two workers.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.exit_statuses = []
        self.supervisor = Supervisor(self.reactor, 2, ["tcp:8080:interface=127.0.0.1", "tcp6:8081"],
                                     lambda index: ["twistd", "netproxy", "http", str(index)], ENVIRON, 10.0,
                                     set_exit_status=self.exit_statuses.append, listen_with=fake_hold)
        self.supervisor.privilegedStartService()
        self.supervisor.startService()
        self.addCleanup(shutil.rmtree, self.supervisor.state, True)

    def process(self, index):
        """
        :returns: the running process of worker C{index}.
        """
        return self.supervisor.workers[index].transport

    def all_ready(self):
        for index in range(2):
            self.process(index).report("READY=1")


class StartTests(SupervisorTestCase):
    """
    The workers get the sockets, a place, and none of systemd's variables.
    """

    def test_spawned(self):
        """
        Each worker runs its command, inherits the listening sockets from descriptor 4 in --listen order, reads 0 and writes 3.
        """
        self.assertEqual(len(self.reactor.processes), 2)
        for index, process in enumerate(self.reactor.processes):
            self.assertEqual(process.argv, ["twistd", "netproxy", "http", str(index)])
            self.assertEqual(process.child_fds, {0: "w", 1: 1, 2: 2, 3: "r", 4: 10, 5: 11})
            place = json.loads(process.env[WORKER_VARIABLE])
            self.assertEqual(place, {"index": index, "count": 2, "listening": [[4, "INET"], [5, "INET6"]],
                                     "control": [0, 3], "state": self.supervisor.state})
        self.assertEqual(os.stat(self.supervisor.state).st_mode & 0o777, 0o700)

    def test_environment(self):
        """
        Workers never see NOTIFY_SOCKET, the watchdog or systemd's sockets; the rest of the environment is kept.
        """
        for process in self.reactor.processes:
            self.assertEqual({name: value for name, value in process.env.items() if name != WORKER_VARIABLE},
                             {"PATH": "/usr/bin", "CACHE_DIRECTORY": "/var/cache/x"})

    def test_ready_once_all_listen(self):
        """
        when_ready fires, and healthy is true, only once every worker reported READY=1.
        """
        ready = self.supervisor.when_ready()
        self.assertFalse(self.supervisor.healthy())
        self.process(0).report("READY=1")
        self.assertNoResult(ready)
        self.assertFalse(self.supervisor.healthy())
        self.process(1).report("READY=1")
        self.successResultOf(ready)
        self.assertTrue(self.supervisor.healthy())
        self.successResultOf(self.supervisor.when_ready())

    def test_reports_split_and_joined(self):
        """
        A report split over reads, and two in one read, are each understood once.
        """
        self.process(0).protocol.childDataReceived(3, b"REA")
        self.assertFalse(self.supervisor.workers[0].ready)
        self.process(0).protocol.childDataReceived(3, b"DY=1\0")
        self.assertTrue(self.supervisor.workers[0].ready)

    def test_other_descriptors_ignored(self):
        """
        Bytes on any descriptor but the report pipe are no report.
        """
        self.process(0).protocol.childDataReceived(1, b"READY=1\0")
        self.assertFalse(self.supervisor.workers[0].ready)

    def test_hostile_reports(self):
        """
        An endless report is dropped with a warning and an unknown one is logged; neither counts as READY.
        """
        self.process(0).protocol.childDataReceived(3, b"R" * 10000)
        self.process(0).report("HELLO=1")
        self.assertFalse(self.supervisor.workers[0].ready)
        self.process(0).report("READY=1")
        self.assertTrue(self.supervisor.workers[0].ready)

    def test_dies_before_ready(self):
        """
        A worker that exits during start-up stops the service with exit status 1; nothing is restarted.
        """
        self.process(1).report("READY=1")
        self.process(0).end(1)
        self.assertEqual(self.exit_statuses, [1])
        self.assertEqual(self.reactor.stopped, 1)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_spawn_fails(self):
        """
        A worker that cannot even be started during start-up stops the service too.
        """
        reactor = FakeReactor()
        reactor.refuse_spawn = OSError(11, "Resource temporarily unavailable")
        statuses = []
        supervisor = Supervisor(reactor, 1, ["tcp:0"], lambda index: ["twistd"], {}, 10.0,
                                set_exit_status=statuses.append, listen_with=fake_hold)
        supervisor.privilegedStartService()
        supervisor.startService()
        self.addCleanup(shutil.rmtree, supervisor.state, True)
        self.assertEqual((statuses, reactor.stopped), ([1], 1))


class RestartTests(SupervisorTestCase):
    """
    A worker that dies after start-up is started again, with back-off.
    """

    def setUp(self):
        super().setUp()
        self.all_ready()

    def test_restarted_after_delay(self):
        """
        A killed worker is started again after 0.1 s, with the same index; the other is left alone.
        """
        other = self.process(1)
        self.process(0).end(signal=9)
        self.assertIsNone(self.supervisor.workers[0])
        self.assertFalse(self.supervisor.healthy())
        self.reactor.advance(0.099)
        self.assertEqual(len(self.reactor.processes), 2)
        self.reactor.advance(0.001)
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertEqual(json.loads(self.reactor.processes[2].env[WORKER_VARIABLE])["index"], 0)
        self.assertEqual(other.signals, [])
        self.assertIs(self.process(1), other)
        self.assertFalse(self.supervisor.healthy())
        self.process(0).report("READY=1")
        self.assertTrue(self.supervisor.healthy())

    def test_backoff_doubles_to_cap(self):
        """
        A worker dying again at once waits 0.1, 0.2, 0.4 ... s, at most 10 s.
        """
        delays = []
        for attempt in range(10):
            self.process(0).end(1)
            [restart] = self.reactor.getDelayedCalls()
            delays.append(round(restart.getTime() - self.reactor.seconds(), 3))
            self.reactor.advance(delays[-1])
            self.assertEqual(len(self.reactor.processes), 3 + attempt)
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
        self.assertEqual([restart_delay(attempt) for attempt in (0, 3, 50)], [0.1, 0.8, 10.0])

    def test_backoff_reset_after_stable_run(self):
        """
        A worker that ran STABLE_AFTER seconds before dying is restarted after the first delay again.
        """
        for attempt in range(3):
            self.process(0).end(1)
            self.reactor.advance(10)
        self.reactor.advance(STABLE_AFTER)
        self.process(0).end(1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 6)

    def test_spawn_fails_later(self):
        """
        A restart that cannot spawn is tried again after a longer delay.
        """
        self.process(0).end(1)
        self.reactor.refuse_spawn = OSError(11, "Resource temporarily unavailable")
        self.reactor.advance(0.1)
        self.assertIsNone(self.supervisor.workers[0])
        self.reactor.refuse_spawn = None
        self.reactor.advance(0.2)
        self.assertIsNotNone(self.supervisor.workers[0])
        self.assertEqual(self.exit_statuses, [])


class ReloadTests(SupervisorTestCase):
    """
    SIGHUP is forwarded to every worker, and its end awaits each one's report.
    """

    def test_forwarded_to_all(self):
        """
        Every ready worker gets SIGHUP; the reload is done once each reported RELOADING=1 then READY=1.
        """
        self.all_ready()
        done = self.supervisor.reload()
        self.assertEqual([process.signals for process in self.reactor.processes], [["HUP"], ["HUP"]])
        self.process(0).report("RELOADING=1\nMONOTONIC_USEC=1", "READY=1")
        self.assertNoResult(done)
        self.process(1).report("RELOADING=1\nMONOTONIC_USEC=2")
        self.assertNoResult(done)
        self.process(1).report("READY=1")
        self.successResultOf(done)

    def test_starting_worker_signalled_once_ready(self):
        """
        A worker still starting gets SIGHUP only once it listens (its handler is in place by then).
        """
        self.process(0).report("READY=1")
        done = self.supervisor.reload()
        self.assertEqual(self.process(1).signals, [])
        self.process(1).report("READY=1")
        self.assertEqual(self.process(1).signals, ["HUP"])
        for index in range(2):
            self.process(index).report("RELOADING=1", "READY=1")
        self.successResultOf(done)

    def test_worker_dies_during_reload(self):
        """
        A worker that exits before reporting its reload does not hold the reload up.
        """
        self.all_ready()
        done = self.supervisor.reload()
        self.process(0).report("RELOADING=1", "READY=1")
        self.process(1).end(signal=9)
        self.successResultOf(done)

    def test_silent_worker_times_out(self):
        """
        A worker that never reports its reload is given up on after RELOAD_TIMEOUT seconds.
        """
        self.all_ready()
        done = self.supervisor.reload()
        self.process(0).report("RELOADING=1", "READY=1")
        self.reactor.advance(RELOAD_TIMEOUT - 1)
        self.assertNoResult(done)
        self.reactor.advance(1)
        self.successResultOf(done)

    def test_systemd_hears_reloading_then_ready(self):
        """
        Through the main process's ReloadOnHangup, systemd hears RELOADING=1 at once and READY=1 after every worker reloaded.
        """
        self.all_ready()
        messages = []
        notifier = SystemdNotifier(self.reactor, environ={})
        notifier.socket = type("Channel", (), {"send": lambda self, text: messages.append(text.splitlines()[0]),
                                               "address": "test"})()
        notifier.running = True
        hangup = ReloadOnHangup([self.supervisor.reload], self.reactor)
        hangup.observers.append(notifier)
        hangup.reload()
        self.assertEqual(messages, ["RELOADING=1"])
        for index in range(2):
            self.process(index).report("RELOADING=1", "READY=1")
        self.assertEqual(messages, ["RELOADING=1", "READY=1"])


class StopTests(SupervisorTestCase):
    """
    Stopping the main process drains every worker.
    """

    def setUp(self):
        super().setUp()
        self.all_ready()

    def test_sigterm_forwarded(self):
        """
        Every worker gets SIGTERM; the stop is done once all exited, and only then are the main process's sockets closed.
        """
        stopped = self.supervisor.stopService()
        self.assertEqual([process.signals for process in self.reactor.processes], [["TERM"], ["TERM"]])
        self.process(0).end()
        self.assertNoResult(stopped)
        self.assertFalse(any(port.closed for port in self.supervisor._ports))
        ports = list(self.supervisor._ports)
        self.process(1).end()
        self.successResultOf(stopped)
        self.assertTrue(all(port.closed for port in ports))
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_pending_restart_cancelled(self):
        """
        A worker waiting for its restart is not started once the service stops.
        """
        self.process(0).end(1)
        stopped = self.supervisor.stopService()
        self.process(1).end()
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_stuck_worker_killed(self):
        """
        A worker still running --shutdown-timeout plus STOP_GRACE seconds after SIGTERM is killed.
        """
        stopped = self.supervisor.stopService()
        self.process(0).end()
        self.reactor.advance(10.0 + STOP_GRACE - 0.01)
        self.assertEqual(self.reactor.processes[1].signals, ["TERM"])
        self.reactor.advance(0.01)
        self.assertEqual(self.reactor.processes[1].signals, ["TERM", "KILL"])
        self.reactor.processes[1].end(signal=9)
        self.successResultOf(stopped)

    def test_stopping_report(self):
        """
        A worker's STOPPING=1 is taken (logged), not counted as unknown.
        """
        self.process(0).report("STOPPING=1")
        self.assertTrue(self.supervisor.workers[0].ready)


class WatchdogTests(SupervisorTestCase):
    """
    The main process pings systemd's watchdog only while every worker is alive.
    """

    def test_pings_only_while_all_alive(self):
        """
        No READY=1 or ping before both listen; pings stop while one is down and resume once it is back.
        """
        messages = []
        notifier = SystemdNotifier(self.reactor, environ={"WATCHDOG_USEC": "2000000"}, readiness=self.supervisor)
        notifier.socket = type("Channel", (), {"send": lambda self, text: messages.append(text),
                                               "close_when_sent": lambda self: None, "address": "test"})()
        self.reactor.callWhenRunning = lambda function, *args: function(*args)
        notifier.startService()
        self.reactor.advance(3)
        self.assertEqual(messages, [])
        self.all_ready()
        self.assertEqual(messages, ["READY=1", "WATCHDOG=1"])
        self.process(0).end(signal=9)
        self.reactor.advance(0.5)  # restarted, not yet listening
        self.reactor.advance(1.0)
        self.assertEqual(messages, ["READY=1", "WATCHDOG=1"])
        self.process(0).report("READY=1")
        self.reactor.advance(1.0)
        self.assertEqual(messages, ["READY=1", "WATCHDOG=1", "WATCHDOG=1"])
        notifier.stopService()


class HoldTests(SynchronousTestCase):
    """
    The main process's copy of a socket listens without accepting.
    """

    def test_paused(self):
        """
        hold listens on the endpoint and stops reading at once.
        """
        reactor = MemoryReactorClock()
        paused = []

        def listen(port, factory, backlog=50, interface=""):
            port = type("Port", (), {"stopReading": lambda self: paused.append(True)})()
            return port

        reactor.listenTCP = listen
        port = hold("tcp:8080:interface=127.0.0.1", reactor)
        self.assertEqual(paused, [True])
        self.assertIsNotNone(port)

    def test_failure_raised(self):
        """
        A port that cannot be listened on raises at once, so start-up fails.
        """
        reactor = MemoryReactorClock()

        def listen(port, factory, backlog=50, interface=""):
            raise OSError("in use")

        reactor.listenTCP = listen
        self.assertRaises(OSError, hold, "tcp:8080", reactor)


class RoleProcessTests(SynchronousTestCase):
    """
    makeService's choice: the role itself, a worker, or the main process of workers.
    """

    def options(self, *args):
        options = tap.Options()
        options.parseOptions(["relay", "--listen", "tcp:0:interface=127.0.0.1", *args])
        return options

    def test_one_process(self):
        """
        Without --workers the role is built in this process, with a systemd notifier of its own.
        """
        service, built = MultiService(), []
        notifier = role_process(self.options(), MemoryReactorClock(), service,
                                lambda role, reactor: built.append(role) or MultiService())
        self.assertEqual(len(built), 1)
        self.assertIsNone(notifier.readiness)

    def test_main_process(self):
        """
        With --workers 2 the role is not built here: a Supervisor and a SIGHUP forwarder are, and the notifier waits for it.
        """
        service, built = MultiService(), []
        options = self.options("--workers", "2")
        notifier = role_process(options, MemoryReactorClock(), service, lambda role, reactor: built.append(role))
        self.assertEqual(built, [])
        children = list(service)
        self.assertIsInstance(children[0], Supervisor)
        self.assertIsInstance(children[1], ReloadOnHangup)
        self.assertIs(notifier.readiness, children[0])
        self.assertEqual(options.argv, ["relay", "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2"])

    def test_supervise_relay_listen(self):
        """
        The relay's single --listen is held as a list of one.
        """
        service = MultiService()
        options = self.options("--workers", "3")
        supervise(options, MemoryReactorClock(), service)
        supervisor = list(service)[0]
        self.assertEqual((supervisor.count, supervisor._listen), (3, ["tcp:0:interface=127.0.0.1"]))
