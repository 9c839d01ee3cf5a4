"""
End-to-end tests of running under systemd: real C{twistd} processes notify
a unix datagram socket bound by the test, as systemd's C{$NOTIFY_SOCKET}
would be (C{READY=1}, C{WATCHDOG=1}, C{RELOADING=1}, C{STOPPING=1}), and
adopt a listening socket passed the way systemd passes it (C{LISTEN_FDS},
C{LISTEN_PID}, descriptor 3).
"""

import os
import signal
import socket
import time
import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LISTEN,
    LOCALHOST,
    SOCKET_TIMEOUT,
    WAIT_TIMEOUT,
    OutputTimeout,
    closed_port,
    connect_client,
    fresh_directory,
    raw_exchange,
    relay_request,
    run_twistd,
    start_daemon,
    start_server,
)
from tests.integration.http_origin import pattern, start_origin

# What the relay answers for a blocked destination (the README's error table).
NOT_ALLOWED = b"Error, not allowed address"


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def accepts(port):
    """
    :returns: whether something accepts TCP connections on 127.0.0.1:port
        right now (a loopback connect completes or is refused at once).
    """
    try:
        with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT):
            return True
    except ConnectionRefusedError:
        return False
    except ConnectionResetError:
        # Reset after the handshake (seen about once in twenty runs while
        # the daemon starts): something was listening, which is the question.
        return True


class Message:
    """
    One notification datagram.

    :ivar raw: its bytes.
    :ivar fields: its C{NAME=value} lines, as a L{dict}.
    :ivar arrived: C{CLOCK_MONOTONIC} in microseconds when it was read.
    :ivar probed: what the receiver's C{probe} returned as it was read.
    """

    def __init__(self, raw, probed):
        self.raw = raw
        self.fields = dict(line.split("=", 1) for line in raw.decode("utf-8").splitlines() if "=" in line)
        self.arrived = monotonic_usec()
        self.probed = probed

    def __repr__(self):
        return f"<Message {self.raw!r}>"


class NotifyReceiver(DatagramProtocol):
    """
    The test's stand-in for systemd's notification socket: records every
    datagram and lets the test wait for one.

    :param probe: called as each datagram is read (to see, for example,
        whether the daemon listens at that moment); its result is kept on
        the L{Message}.
    :ivar messages: the L{Message}s read, in order.
    :ivar address: the value for C{$NOTIFY_SOCKET}.
    """

    def __init__(self, probe=lambda: None):
        self.probe = probe
        self.messages = []
        self.address = None
        self._waiters = []

    def datagramReceived(self, data, address):
        self.messages.append(Message(data, self.probe()))
        for waiter in list(self._waiters):
            self._check(waiter)

    def _check(self, waiter):
        name, value, since, deferred = waiter
        for index in range(since, len(self.messages)):
            if self.messages[index].fields.get(name) == value:
                self._waiters.remove(waiter)
                deferred.callback(index)
                return

    def wait_for(self, name, value="1", since=0, timeout=WAIT_TIMEOUT):
        """
        :returns: a L{Deferred} firing with the index of the first message
            from C{since} on with C{NAME=value}, failing after C{timeout}
            seconds.
        """
        deferred = Deferred(lambda d: self._waiters.remove(waiter) if waiter in self._waiters else None)
        waiter = (name, value, since, deferred)
        self._waiters.append(waiter)
        self._check(waiter)

        def timed_out(result, seconds):
            raise OutputTimeout(f"no {name}={value} from message {since} on within {seconds} s: {self.messages}")

        return deferred.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)

    def names(self, since=0):
        """
        :returns: the first line of each message from C{since} on.
        """
        return [message.raw.decode().splitlines()[0] for message in self.messages[since:]]


def notify_socket(testcase, probe=lambda: None, abstract=False):
    """
    Bind a L{NotifyReceiver} on a unix datagram socket (a path in a fresh
    directory, or a name in the abstract namespace) until the test ends.

    :returns: the receiver.
    """
    receiver = NotifyReceiver(probe)
    if abstract:
        name = f"netproxy-test-{uuid.uuid4().hex}"
        port = reactor.listenUNIXDatagram("\0" + name, receiver)
        receiver.address = "@" + name
    else:
        receiver.address = os.path.join(fresh_directory(testcase), "notify")
        port = reactor.listenUNIXDatagram(receiver.address, receiver)
    testcase.addCleanup(port.stopListening)
    return receiver


def http_get(url):
    """
    :returns: a proxy request for C{url} that closes the connection after
        the response.
    """
    return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url.encode("ascii")


class NotifyTests(TestCase):
    """
    A role started with $NOTIFY_SOCKET tells the socket how it is doing.
    """

    timeout = 60

    async def test_ready_once_listening_and_cache_loaded(self):
        """
        The HTTP proxy (with its cache) sends READY=1 as its first message, when its port already accepts connections, and serves.
        """
        port = closed_port()
        receiver = notify_socket(self, probe=lambda: accepts(port))
        origin = start_origin(self)
        proxy = await start_daemon(self, "http", "--allow-local", "--listen", f"tcp:{port}:interface=127.0.0.1", "--cache-dir",
                                   os.path.join(fresh_directory(self), "cache"),
                                   env={"NOTIFY_SOCKET": receiver.address}, ready=())
        ready = await receiver.wait_for("READY")
        self.assertEqual(ready, 0, receiver.messages)
        self.assertTrue(receiver.messages[0].probed, "READY=1 came before the port accepted connections")
        await proxy.wait_for(r"notifying systemd at .*: ready")
        reply = await raw_exchange(port, http_get(origin.url("/fixed?size=100")), until_closed=True)
        self.assertTrue(reply.data.startswith(b"HTTP/1.1 200 "), reply.data[:200])
        self.assertTrue(reply.data.endswith(b"".join(pattern(100))))

    async def test_stopping_as_shutdown_begins(self):
        """
        SIGTERM during a download: STOPPING=1 comes while the proxy drains it; the download completes, exit 0.
        """
        receiver = notify_socket(self)
        origin = start_origin(self)
        proxy = await start_daemon(self, "http", "--allow-local", "--listen", LISTEN, "--no-cache",
                                   env={"NOTIFY_SOCKET": receiver.address}, ready=("ProxyFactory",))
        await receiver.wait_for("READY")
        held = origin.next_held()
        client = await connect_client(self, proxy.port, http_get(origin.url("/gate?size=2000")))
        await held
        await client.wait_for_bytes(1000)
        proxy.send_signal(signal.SIGTERM)
        stopping = await receiver.wait_for("STOPPING")
        self.assertTrue(proxy.output.running, "STOPPING=1 came after the proxy had exited")
        self.assertFalse(client.lost.called, "the download was cut before STOPPING=1")
        origin.release()
        await client.lost
        self.assertTrue(client.received.endswith(b"".join(pattern(2000))), client.received[-200:])
        self.assertEqual(await proxy.wait_exit(), "exit code 0", proxy.output.transcript())
        self.assertEqual(receiver.names(), ["READY=1", "STOPPING=1"])
        self.assertEqual(stopping, len(receiver.messages) - 1)

    async def test_watchdog(self):
        """
        With WATCHDOG_USEC set (and an abstract-namespace socket), the ack role pings WATCHDOG=1 again and again after READY=1.
        """
        receiver = notify_socket(self, abstract=True)
        ack = await start_daemon(self, "ack", "--listen", LISTEN,
                                 env={"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "100000"})
        ready = await receiver.wait_for("READY")
        since = ready + 1
        for count in range(5):
            since = await receiver.wait_for("WATCHDOG", since=since) + 1
        self.assertEqual(receiver.names()[:1], ["READY=1"])
        self.assertGreaterEqual(receiver.names().count("WATCHDOG=1"), 5)
        reply = await raw_exchange(ack.port, b"tgmr")
        self.assertEqual(reply.data, b"DONE")

    async def test_no_watchdog_unasked(self):
        """
        Without WATCHDOG_USEC the role sends READY=1 then nothing until STOPPING=1.
        """
        receiver = notify_socket(self)
        ack = await start_daemon(self, "ack", "--listen", LISTEN, env={"NOTIFY_SOCKET": receiver.address})
        await receiver.wait_for("READY")
        ack.send_signal(signal.SIGTERM)
        await receiver.wait_for("STOPPING")
        self.assertEqual(await ack.wait_exit(), "exit code 0")
        self.assertEqual(receiver.names(), ["READY=1", "STOPPING=1"])

    async def test_reload(self):
        """
        SIGHUP: RELOADING=1 with the reload's monotonic time, then READY=1 with the new blocklist in force (or
        the old one, when the new one is bad).
        """
        receiver = notify_socket(self)
        destination = start_server(self, reply=lambda data: b"DONE")
        blocklist = FilePath(fresh_directory(self)).child("blocklist")
        blocklist.setContent(b"# nothing blocked yet\n")
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--blocklist", blocklist.path,
                                   env={"NOTIFY_SOCKET": receiver.address})
        await receiver.wait_for("READY")
        reply = await raw_exchange(relay.port, relay_request(destination.port, "before"))
        self.assertEqual(reply.data, b"DONE")

        blocklist.setContent(f"127.0.0.1:{destination.port}\n".encode())
        since = len(receiver.messages)
        before = monotonic_usec()
        relay.send_signal(signal.SIGHUP)
        reloading = await receiver.wait_for("RELOADING", since=since)
        ready = await receiver.wait_for("READY", since=reloading + 1)
        self.assertEqual(receiver.names(since), ["RELOADING=1", "READY=1"])
        stamp = int(receiver.messages[reloading].fields["MONOTONIC_USEC"])
        self.assertTrue(before <= stamp <= receiver.messages[reloading].arrived, (before, stamp))
        self.assertEqual(ready, reloading + 1)
        reply = await raw_exchange(relay.port, relay_request(destination.port, "after"), until_closed=True)
        self.assertEqual(reply.data, NOT_ALLOWED)

        blocklist.setContent(b"this is not a rule !\n")
        since = len(receiver.messages)
        relay.send_signal(signal.SIGHUP)
        reloading = await receiver.wait_for("RELOADING", since=since)
        await receiver.wait_for("READY", since=reloading + 1)
        await relay.wait_for("refused to reload")
        reply = await raw_exchange(relay.port, relay_request(destination.port, "still"), until_closed=True)
        self.assertEqual(reply.data, NOT_ALLOWED)
        self.assertEqual([connection.received for connection in destination.connections], [b"before"])

    async def test_reload_without_lists(self):
        """
        SIGHUP to a role with nothing to reload (ack) is answered RELOADING=1, READY=1 and does not end it.
        """
        receiver = notify_socket(self)
        ack = await start_daemon(self, "ack", "--listen", LISTEN, env={"NOTIFY_SOCKET": receiver.address})
        await receiver.wait_for("READY")
        ack.send_signal(signal.SIGHUP)
        reloading = await receiver.wait_for("RELOADING")
        await receiver.wait_for("READY", since=reloading + 1)
        await ack.wait_for("nothing to reload")
        reply = await raw_exchange(ack.port, b"tgmr")
        self.assertEqual(reply.data, b"DONE")
        self.assertTrue(ack.output.running)


class SocketActivationTests(TestCase):
    """
    A listening socket passed as systemd passes it is adopted and served.
    """

    timeout = 60

    async def test_http_on_inherited_socket(self):
        """
        The HTTP proxy on --listen systemd:domain=INET:index=0, given a listening socket as descriptor 3 with
        LISTEN_FDS=1 and LISTEN_PID its own pid, sends READY=1 and serves requests on that socket.
        """
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listening.close)
        listening.bind((LOCALHOST, 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        receiver = notify_socket(self, probe=lambda: accepts(port))
        origin = start_origin(self)
        # LISTEN_PID must be the daemon's own pid: the shell sets it to its
        # pid, then becomes the daemon.  systemd also sets LISTEN_FDNAMES,
        # which Twisted requires.
        proxy = await start_daemon(
            self, "http", "--allow-local", "--listen", "systemd:domain=INET:index=0", "--no-cache",
            env={"NOTIFY_SOCKET": receiver.address, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "netproxy-http.socket"},
            fds={3: listening.fileno()},
            wrapper=("/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"),
            ready=())
        # Only the daemon can accept on it from now on.
        listening.close()
        await receiver.wait_for("READY")
        await proxy.wait_for(rf"ProxyFactory starting on {port}\b")
        reply = await raw_exchange(port, http_get(origin.url("/fixed?size=100")), until_closed=True)
        self.assertTrue(reply.data.startswith(b"HTTP/1.1 200 "), reply.data[:200])
        self.assertTrue(reply.data.endswith(b"".join(pattern(100))))

    async def test_not_activated(self):
        """
        A systemd: endpoint without an inherited socket stops start-up with an error naming --listen.
        """
        result = await run_twistd("-n", "--pidfile=", "netproxy", "http", "--listen", "systemd:domain=INET:index=0",
                                  "--no-cache", directory=fresh_directory(self))
        self.assertNotEqual(result.code, 0, result)
        self.assertIn("--listen", result.out + result.err)
        self.assertNotIn("Traceback", result.out + result.err)
