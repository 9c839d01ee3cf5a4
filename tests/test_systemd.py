"""
Tests for L{netproxy.systemd}: the sd_notify messages, the watchdog, the
reload announcements, what happens when the socket misbehaves, and where
the notifier sits in every role's service; and for the unit files of
contrib/systemd.
"""

import errno
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

from twisted.application.service import IServiceCollection, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.reload import ReloadOnHangup
from netproxy.systemd import (
    MAX_PENDING,
    RETRY_DELAY,
    SystemdNotifier,
    notify_address,
    watchdog_interval,
)
from tests.test_systemd_unit import read_unit

UNITS = Path(__file__).resolve().parents[1] / "contrib" / "systemd"
PID = 4242


class FakeSocket:
    """
    Records the datagrams sent; C{errors} are raised by the next sends, in
    order, instead of sending.
    """

    def __init__(self, errors):
        self.sent = []
        self.errors = errors
        self.closed = False

    def sendto(self, data, address):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((data, address))
        return len(data)

    def close(self):
        self.closed = True


class FakeSockets:
    """
    A C{make_socket} that hands out L{FakeSocket}s and remembers them.

    :ivar errors: raised by the sockets' next sends, in order.
    """

    def __init__(self):
        self.made = []
        self.errors = []

    def __call__(self):
        self.made.append(FakeSocket(self.errors))
        return self.made[-1]

    def messages(self):
        return [data.decode() for made in self.made for data, address in made.sent]


class RunningClock(Clock):
    """
    A L{Clock} that is a running reactor: C{callWhenRunning} calls at once.
    """

    def callWhenRunning(self, f, *args, **kwargs):
        f(*args, **kwargs)


class StartingClock(Clock):
    """
    A L{Clock} that is a reactor not yet running: C{callWhenRunning} keeps
    the calls until L{run}.
    """

    def __init__(self):
        super().__init__()
        self.when_running = []

    def callWhenRunning(self, f, *args, **kwargs):
        self.when_running.append((f, args, kwargs))

    def run(self):
        for f, args, kwargs in self.when_running:
            f(*args, **kwargs)


def full():
    return BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def gone():
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))


class AddressTests(SynchronousTestCase):
    def test_path(self):
        """A path in $NOTIFY_SOCKET is used as it is."""
        self.assertEqual(notify_address("/run/systemd/notify"), "/run/systemd/notify")

    def test_abstract(self):
        """@name is the abstract-namespace address NUL + name."""
        self.assertEqual(notify_address("@/org/freedesktop/systemd1/notify/42"),
                         "\0/org/freedesktop/systemd1/notify/42")

    def test_nothing_usable(self):
        """Unset, empty, a lone @ or another scheme (vsock:) means nothing to notify."""
        for value in (None, "", "@", "vsock:2:1234", "relative/path"):
            self.assertIsNone(notify_address(value), value)


class WatchdogIntervalTests(SynchronousTestCase):
    def test_half_of_usec(self):
        """Pings go out every half of $WATCHDOG_USEC, in seconds."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}, PID), 15.0)

    def test_pid_must_be_ours(self):
        """$WATCHDOG_PID naming another process turns the watchdog off; naming ours keeps it."""
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, PID))
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID)}, PID), 15.0)

    def test_unset_or_bad(self):
        """No, zero, negative or garbled $WATCHDOG_USEC means no watchdog."""
        for environ in ({}, {"WATCHDOG_USEC": ""}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "-5"},
                        {"WATCHDOG_USEC": "soon"}):
            self.assertIsNone(watchdog_interval(environ, PID), environ)


class NotifierTests(SynchronousTestCase):
    def setUp(self):
        self.clock = RunningClock()
        self.sockets = FakeSockets()

    def notifier(self, **environ):
        environ.setdefault("NOTIFY_SOCKET", "/run/notify")
        return SystemdNotifier(self.clock, environ, pid=PID, monotonic=lambda: 123456789,
                               make_socket=self.sockets)

    def test_ready_and_stopping(self):
        """READY=1 when started, STOPPING=1 when stopped, each its own datagram to $NOTIFY_SOCKET; then the socket is closed."""
        notifier = self.notifier()
        notifier.startService()
        self.assertEqual(self.sockets.messages(), ["READY=1"])
        notifier.stopService()
        self.assertEqual(self.sockets.messages(), ["READY=1", "STOPPING=1"])
        [made] = self.sockets.made
        self.assertEqual({address for data, address in made.sent}, {"/run/notify"})
        self.assertTrue(made.closed)

    def test_ready_once_reactor_runs(self):
        """READY=1 waits for the reactor to run (twistd starts the services before), and is not sent if the service stopped first."""
        clock = StartingClock()
        notifier = SystemdNotifier(clock, {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "2000000"}, pid=PID,
                                   make_socket=self.sockets)
        notifier.startService()
        self.assertEqual(self.sockets.messages(), [])
        clock.run()
        self.assertEqual(self.sockets.messages(), ["READY=1", "WATCHDOG=1"])

        sockets = FakeSockets()
        clock = StartingClock()
        notifier = SystemdNotifier(clock, {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "2000000"}, pid=PID,
                                   make_socket=sockets)
        notifier.startService()
        notifier.stopService()
        clock.run()
        self.assertEqual(sockets.messages(), ["STOPPING=1"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_socket_no_op(self):
        """Without $NOTIFY_SOCKET nothing is sent, no socket is made and no timer runs, even with WATCHDOG_USEC set."""
        notifier = SystemdNotifier(self.clock, {"WATCHDOG_USEC": "1000000"}, pid=PID, make_socket=self.sockets)
        notifier.startService()
        notifier.reloading()
        notifier.reloaded()
        self.clock.advance(10)
        notifier.stopService()
        self.assertEqual(self.sockets.made, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_process_environment_by_default(self):
        """Without an environ argument the notifier reads the process's environment, and removes nothing from it."""
        self.patch(os, "environ", {"NOTIFY_SOCKET": "@netproxy-test", "WATCHDOG_USEC": "4000000"})
        notifier = SystemdNotifier(self.clock, make_socket=self.sockets)
        notifier.startService()
        notifier.stopService()
        self.assertEqual(self.sockets.messages(), ["READY=1", "WATCHDOG=1", "STOPPING=1"])
        self.assertEqual(os.environ, {"NOTIFY_SOCKET": "@netproxy-test", "WATCHDOG_USEC": "4000000"})

    def test_abstract_address(self):
        """An @name $NOTIFY_SOCKET is sent to as the abstract address."""
        notifier = self.notifier(NOTIFY_SOCKET="@netproxy/notify")
        notifier.startService()
        [(_, address)] = self.sockets.made[0].sent
        self.assertEqual(address, "\0netproxy/notify")

    def test_watchdog_interval(self):
        """WATCHDOG=1 goes out at start and then every WATCHDOG_USEC/2, and stops with the service."""
        notifier = self.notifier(WATCHDOG_USEC="2000000")
        notifier.startService()
        self.assertEqual(self.sockets.messages(), ["READY=1", "WATCHDOG=1"])
        self.clock.advance(0.99)
        self.assertEqual(self.sockets.messages().count("WATCHDOG=1"), 1)
        self.clock.advance(0.01)
        self.assertEqual(self.sockets.messages().count("WATCHDOG=1"), 2)
        self.clock.pump([1.0] * 3)
        self.assertEqual(self.sockets.messages().count("WATCHDOG=1"), 5)
        notifier.stopService()
        self.clock.advance(10)
        self.assertEqual(self.sockets.messages()[-1], "STOPPING=1")
        self.assertEqual(self.sockets.messages().count("WATCHDOG=1"), 5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_watchdog_for_another_pid(self):
        """A watchdog meant for another process ($WATCHDOG_PID) sends no pings."""
        notifier = self.notifier(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(PID + 1))
        notifier.startService()
        self.clock.advance(5)
        self.assertEqual(self.sockets.messages(), ["READY=1"])

    def test_reload(self):
        """A reload is RELOADING=1 with MONOTONIC_USEC in one datagram, then READY=1."""
        notifier = self.notifier()
        notifier.startService()
        notifier.reloading()
        notifier.reloaded()
        self.assertEqual(self.sockets.messages(), ["READY=1", "RELOADING=1\nMONOTONIC_USEC=123456789", "READY=1"])

    def test_no_reload_messages_when_stopped(self):
        """A reload announced after STOPPING=1 sends nothing: systemd must not see READY=1 again."""
        notifier = self.notifier()
        notifier.startService()
        notifier.stopService()
        notifier.reloading()
        notifier.reloaded()
        self.assertEqual(self.sockets.messages(), ["READY=1", "STOPPING=1"])

    def test_socket_gone(self):
        """A socket that has gone costs one warning however often it fails, never an exception; later messages are tried."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        notifier = self.notifier(WATCHDOG_USEC="2000000")
        self.sockets.errors.extend([gone(), gone(), gone()])
        notifier.startService()
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.sockets.messages(), ["WATCHDOG=1"])
        warnings = [event for event in events if event["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("unusable", warnings[0]["log_format"])
        self.assertEqual(warnings[0]["address"], "/run/notify")

    def test_socket_cannot_be_made(self):
        """A socket that cannot be made (no descriptors left) is a warning, not a crash."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def no_socket():
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        notifier = SystemdNotifier(self.clock, {"NOTIFY_SOCKET": "/run/notify"}, pid=PID, make_socket=no_socket)
        notifier.startService()
        notifier.stopService()
        self.assertEqual([event["log_level"].name for event in events if event["log_level"].name == "warn"], ["warn"])

    def test_full_socket_retried_in_order(self):
        """A message the socket cannot take now is sent after a short delay, and those after it wait their turn."""
        notifier = self.notifier(WATCHDOG_USEC="2000000")
        self.sockets.errors.append(full())
        notifier.startService()
        self.assertEqual(self.sockets.messages(), [])
        self.clock.advance(RETRY_DELAY)
        self.assertEqual(self.sockets.messages(), ["READY=1", "WATCHDOG=1"])

    def test_pending_bounded(self):
        """While the socket stays full at most MAX_PENDING messages wait; more are dropped with one warning."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        notifier = self.notifier(WATCHDOG_USEC="2000000")
        self.sockets.errors.extend(full() for _ in range(100))
        notifier.startService()
        self.clock.pump([1.0] * (MAX_PENDING + 5))
        self.assertEqual(len(notifier.socket._pending), MAX_PENDING)
        self.assertEqual(len([event for event in events if event["log_level"].name == "warn"]), 1)


class GateTests(SynchronousTestCase):
    """
    A notifier with a channel instead of $NOTIFY_SOCKET, and one whose READY=1 and pings wait for a readiness.
    """

    def setUp(self):
        self.clock = RunningClock()
        self.sent = []
        self.healthy = True
        self.ready = Deferred()
        test = self

        class Channel:
            address = "the test"

            def send(self, message):
                test.sent.append(message.splitlines()[0])

            def close_when_sent(self):
                test.sent.append("closed")

        class Readiness:
            def when_ready(self):
                return test.ready

            def healthy(self):
                return test.healthy

        self.channel, self.readiness = Channel(), Readiness()

    def test_channel(self):
        """
        Messages go to the channel given, even without $NOTIFY_SOCKET; STOPPING=1 closes it.
        """
        notifier = SystemdNotifier(self.clock, {}, pid=PID, channel=self.channel)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        notifier.startService()
        notifier.reloading()
        notifier.reloaded()
        notifier.stopService()
        self.assertEqual(self.sent, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1", "closed"])
        self.assertIn("notifying the test: ready", [event["log_format"].format(**event) for event in logged])

    def test_ready_waits(self):
        """
        READY=1 and the first ping wait for the readiness; a ping is skipped while it is not healthy.
        """
        notifier = SystemdNotifier(self.clock, {"WATCHDOG_USEC": "2000000"}, pid=PID, channel=self.channel,
                                   readiness=self.readiness)
        notifier.startService()
        self.clock.advance(5)
        self.assertEqual(self.sent, [])
        self.ready.callback(None)
        self.assertEqual(self.sent, ["READY=1", "WATCHDOG=1"])
        self.healthy = False
        self.clock.advance(1)
        self.assertEqual(self.sent, ["READY=1", "WATCHDOG=1"])
        self.healthy = True
        self.clock.advance(1)
        self.assertEqual(self.sent, ["READY=1", "WATCHDOG=1", "WATCHDOG=1"])
        notifier.stopService()

    def test_stopped_before_ready(self):
        """
        A service stopped before its readiness came sends no READY=1 when it comes.
        """
        notifier = SystemdNotifier(self.clock, {}, pid=PID, channel=self.channel, readiness=self.readiness)
        notifier.startService()
        notifier.stopService()
        self.ready.callback(None)
        self.assertEqual(self.sent, ["STOPPING=1", "closed"])


class RealSocketTests(SynchronousTestCase):
    """
    The notifier's own socket against real unix datagram sockets.
    """

    def receiver(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.setblocking(False)
        return sock

    def test_abstract_namespace(self):
        """An @name address reaches a socket bound in the abstract namespace."""
        name = f"netproxy-test-{uuid.uuid4().hex}"
        receiver = self.receiver("\0" + name)
        notifier = SystemdNotifier(RunningClock(), {"NOTIFY_SOCKET": "@" + name}, pid=PID)
        notifier.startService()
        notifier.stopService()
        self.assertEqual([receiver.recv(4096), receiver.recv(4096)], [b"READY=1", b"STOPPING=1"])

    def test_path(self):
        """A path address reaches a socket bound at that path."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "notify")
        receiver = self.receiver(path)
        notifier = SystemdNotifier(RunningClock(), {"NOTIFY_SOCKET": path}, pid=PID)
        notifier.startService()
        notifier.stopService()
        self.assertEqual([receiver.recv(4096), receiver.recv(4096)], [b"READY=1", b"STOPPING=1"])

    def test_nobody_listening(self):
        """A path nobody listens on is logged once and the service keeps going."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        notifier = SystemdNotifier(RunningClock(), {"NOTIFY_SOCKET": os.path.join(directory, "gone")}, pid=PID)
        notifier.startService()
        notifier.reloading()
        notifier.reloaded()
        notifier.stopService()
        self.assertEqual(len([event for event in events if event["log_level"].name == "warn"]), 1)


class FakeSignals:
    SIGHUP = 1
    SIG_DFL = 0

    def __init__(self):
        self.handlers = {}

    def signal(self, number, handler):
        previous, self.handlers[number] = self.handlers.get(number), handler
        return previous


class AttachTests(SynchronousTestCase):
    def setUp(self):
        self.clock = RunningClock()
        self.sockets = FakeSockets()
        self.notifier = SystemdNotifier(self.clock, {"NOTIFY_SOCKET": "/run/notify"}, pid=PID,
                                        monotonic=lambda: 7, make_socket=self.sockets)

    def test_last_child_and_reloads(self):
        """attach makes the notifier the last child and announces the reloads of a ReloadOnHangup deep in the tree."""
        root = MultiService()
        role = MultiService()
        role.setServiceParent(root)
        seen = []
        reload = ReloadOnHangup([lambda: seen.append(self.sockets.messages()[-1])], self.clock, FakeSignals())
        reload.setServiceParent(role)
        Service().setServiceParent(role)
        self.notifier.attach(root)
        self.assertIs(list(root)[-1], self.notifier)
        root.startService()
        reload.reload()
        self.assertEqual(seen, ["RELOADING=1\nMONOTONIC_USEC=7"])
        self.assertEqual(self.sockets.messages(), ["READY=1", "RELOADING=1\nMONOTONIC_USEC=7", "READY=1"])

    def test_stopping_before_siblings_stop(self):
        """Stopping the tree sends STOPPING=1 before any other service has been stopped."""
        root = MultiService()
        seen = []

        class Witness(Service):
            def stopService(witness):
                seen.append(self.sockets.messages()[-1])
                return Service.stopService(witness)

        Witness().setServiceParent(root)
        self.notifier.attach(root)
        root.startService()
        root.stopService()
        self.assertEqual(seen, ["STOPPING=1"])

    def test_role_without_reload(self):
        """A role with nothing to reload gets a SIGHUP handler anyway: SIGHUP then announces a reload instead of killing the role."""
        root = MultiService()
        Service().setServiceParent(root)
        self.notifier.attach(root)
        [reload] = [child for child in root if isinstance(child, ReloadOnHangup)]
        self.assertEqual(reload.observers, [self.notifier])
        root.startService()
        reload.reload()
        self.assertEqual(self.sockets.messages(), ["READY=1", "RELOADING=1\nMONOTONIC_USEC=7", "READY=1"])
        root.stopService()

    def test_refused_reload_still_ready(self):
        """A reloader that fails is logged, and READY=1 still follows RELOADING=1."""
        root = MultiService()

        def broken():
            raise ValueError("bad blocklist")

        ReloadOnHangup([broken], self.clock, FakeSignals()).setServiceParent(root)
        self.notifier.attach(root)
        root.startService()
        [reload] = [child for child in root if isinstance(child, ReloadOnHangup)]
        reload.reload()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.sockets.messages()[-2:], ["RELOADING=1\nMONOTONIC_USEC=7", "READY=1"])

    def test_ready_waits_for_slow_reloader(self):
        """READY=1 follows a reload only once a reloader's Deferred has fired."""
        root = MultiService()
        slow = Deferred()
        ReloadOnHangup([lambda: slow], self.clock, FakeSignals()).setServiceParent(root)
        self.notifier.attach(root)
        root.startService()
        [reload] = [child for child in root if isinstance(child, ReloadOnHangup)]
        done = reload.reload()
        self.assertEqual(self.sockets.messages()[-1], "RELOADING=1\nMONOTONIC_USEC=7")
        self.assertNoResult(done)
        slow.callback(None)
        self.successResultOf(done)
        self.assertEqual(self.sockets.messages()[-1], "READY=1")


def _flatten(service):
    """
    :returns: every service under C{service}, in the order they start.
    """
    found = [service]
    if IServiceCollection.providedBy(service):
        for child in service:
            found.extend(_flatten(child))
    return found


class MakeServiceTests(SynchronousTestCase):
    """
    Every daemon role gets a notifier, started after everything else.
    """

    def make(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return tap.makeService(options)

    def test_every_daemon_role(self):
        """Each daemon role's service has the notifier as its last child, so it starts after every listener and stops first."""
        cache = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, cache)
        roles = [
            ("http", "--listen", "tcp:0:interface=127.0.0.1", "--cache-dir", cache),
            ("relay", "--listen", "0"),
            ("ack", "--listen", "0"),
            ("upper", "--tcp", "0", "--udp", "0"),
            ("reverse", "--listen", "0"),
            ("server", "--id", "1", "--pp", "PP_1", "--listen", "0", "--revproc", "5000"),
        ]
        for argv in roles:
            service = self.make(*argv)
            self.assertIsInstance(list(service)[-1], SystemdNotifier, argv)
            started = _flatten(service)
            self.assertIs(started[-1], list(service)[-1], argv)
            self.assertEqual(len([s for s in started if isinstance(s, SystemdNotifier)]), 1, argv)

    def test_http_cache_loads_first(self):
        """The HTTP proxy's cache is loading (LoadOnStart started) before READY=1 is sent."""
        from netproxy.http.cache.store_service import LoadOnStart

        cache = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, cache)
        started = _flatten(self.make("http", "--listen", "tcp:0:interface=127.0.0.1", "--cache-dir", cache))
        kinds = [type(s) for s in started]
        self.assertLess(kinds.index(LoadOnStart), kinds.index(SystemdNotifier))

    def test_blocklist_reload_announced(self):
        """The relay's --blocklist reloader tells the notifier about its reloads; no second SIGHUP handler is added."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        blocklist = os.path.join(directory, "blocklist")
        Path(blocklist).write_text("10.0.0.0/8\n")
        started = _flatten(self.make("relay", "--listen", "0", "--blocklist", blocklist))
        [reload] = [s for s in started if isinstance(s, ReloadOnHangup)]
        [notifier] = [s for s in started if isinstance(s, SystemdNotifier)]
        self.assertEqual(reload.observers, [notifier])

    def test_client_has_none(self):
        """The one-shot client role is no daemon and gets no notifier."""
        service = self.make("client", "upper", "127.0.0.1", "9", "x")
        self.assertEqual([s for s in _flatten(service) if isinstance(s, SystemdNotifier)], [])


class UnitFileTests(SynchronousTestCase):
    """
    The unit files ask for what the daemon provides, and are hardened.
    """

    SERVICES = ("netproxy@.service", "netproxy-http.service")

    def test_notify(self):
        """The services are Type=notify, only the main process may notify, and a watchdog is set."""
        for name in self.SERVICES:
            service = read_unit(UNITS / name)["Service"]
            self.assertEqual((service["Type"], service["NotifyAccess"]), ("notify", "main"), name)
            self.assertIn("WatchdogSec", service, name)
            self.assertIn("-HUP", service["ExecReload"], name)

    def test_hardened(self):
        """The services run as a dynamic user, with a read-only system, private /tmp and a restricted address family set."""
        for name in self.SERVICES:
            service = read_unit(UNITS / name)["Service"]
            for key, value in [("DynamicUser", "yes"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                               ("PrivateTmp", "yes"), ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")]:
                self.assertEqual(service.get(key), value, f"{name} {key}")
            self.assertIn("CacheDirectory", service, name)
            self.assertIn("LogsDirectory", service, name)

    def test_socket_activation(self):
        """netproxy-http.service adopts the first socket of netproxy-http.socket, which it requires."""
        socket_unit = read_unit(UNITS / "netproxy-http.socket")
        service_unit = read_unit(UNITS / "netproxy-http.service")
        self.assertTrue(socket_unit["Socket"]["ListenStream"].startswith("127.0.0.1:"))
        self.assertIn("--listen systemd:domain=INET:index=0", service_unit["Service"]["ExecStart"])
        self.assertIn("netproxy-http.socket", service_unit["Unit"]["Requires"])

    def test_workers(self):
        """The HTTP service serves with --workers (auto unless http.env says), and SIGTERM goes to the main process alone, which forwards it."""
        service = read_unit(UNITS / "netproxy-http.service")["Service"]
        self.assertIn("--workers ${NETPROXY_WORKERS}", service["ExecStart"])
        self.assertEqual(service["Environment"], "NETPROXY_WORKERS=auto")
        for name in self.SERVICES:
            self.assertEqual(read_unit(UNITS / name)["Service"]["KillMode"], "mixed", name)

    def test_workers_option_parses(self):
        """The unit's --workers value and the relay example's options are ones the roles take."""
        options = tap.Options()
        options.parseOptions(["http", "--workers", "auto"])
        self.assertGreaterEqual(options.subOptions["workers"], 1)
        relay_env = (UNITS / "relay.env").read_text().split("NETPROXY_OPTIONS=", 1)[1].split()
        options.parseOptions(["relay", *relay_env])
        self.assertEqual(options.subOptions["workers"], 2)
