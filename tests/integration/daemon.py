"""
A harness for the end-to-end tests: real C{twistd netproxy ROLE} processes,
the C{netproxy-client} command, naive blocking-socket clients, and small
in-process servers to relay to.

Everything here runs under the real reactor of a
L{twisted.trial.unittest.TestCase}, so both C{trial} and C{pytest} can run
the tests.  Nothing ever waits on the wall clock: a test waits for an event
(a log line, a process exit, a socket read) and every wait is bounded by a
timeout that turns into a test failure carrying the daemon's output.

Typical use::

    async def test_something(self):
        ack = await start_daemon(self, "ack", "--listen", LISTEN)
        reply = await raw_exchange(ack.port, b"tgmr")
        self.assertEqual(reply.data, b"DONE")
        await ack.wait_for(r"received 'tgmr' from 127\\.0\\.0\\.1:\\d+")

Each daemon is stopped with C{SIGTERM} at the test's cleanup (and killed if
it does not exit in time); the cleanup fails the test if the daemon had to be
killed, did not exit 0, or logged a traceback, since bad input must never
crash a role.
"""

import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass

from twisted.internet import reactor
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.threads import deferToThread

LOCALHOST = "127.0.0.1"
# Every listening role of these tests takes an ephemeral loopback port.
LISTEN = "tcp:0:interface=127.0.0.1"

# Seconds to wait for a line of output, a process exit or a socket read.
WAIT_TIMEOUT = 15
# Longer than the roles' default --shutdown-timeout (10 s), so a daemon that
# drains its connections for the whole deadline is not taken for a hung one.
STOP_TIMEOUT = 20
SOCKET_TIMEOUT = 10

# twistd run by the interpreter running the tests, so the daemon imports the
# same Twisted and the same (editable) netproxy.
TWISTD = ("-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()")

# The listeners each role announces once it is ready.
READY = {
    "relay": ("RelayFactory",),
    "ack": ("AckFactory",),
    "upper": ("UpperFactory", "UpperDatagramProtocol"),
}

# What systemd tells the processes it starts; a daemon gets them only from
# the test that sets them.
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

# Signs that a daemon hit a bug rather than handling its input.
_CRASH = re.compile(r"Traceback \(most recent call last\)|Unhandled [Ee]rror")


class OutputTimeout(AssertionError):
    """
    An awaited event did not happen in time; the message holds the output.
    """


def fresh_directory(testcase):
    """
    Make an empty directory that is removed when the test ends.

    (Not C{testcase.mktemp()}: under pytest that creates its directories in
    the current directory, the project's root.)

    :returns: its absolute path.
    """
    path = tempfile.mkdtemp(prefix="netproxy-it-")
    testcase.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class OutputCollector(ProcessProtocol):
    """
    Collects a child process's output, lets callers wait for a line matching a
    regular expression, and records how the process ended.

    :ivar lines: every complete line of stdout and stderr, decoded, in the
        order they arrived.
    :ivar out: the raw bytes of stdout.
    :ivar err: the raw bytes of stderr.
    :ivar ended: a L{Deferred} fired with this collector when the process
        has exited and its pipes are closed.
    :ivar exit_code: the exit status, or L{None} (running, or killed by a
        signal).
    :ivar signal: the signal that killed the process, or L{None}.
    """

    def __init__(self, description):
        self.description = description
        self.lines = []
        self.out = b""
        self.err = b""
        self.ended = Deferred()
        self.exit_code = None
        self.signal = None
        self._partial = {}
        self._waiters = []
        self._exited = False

    @property
    def running(self):
        return not self._exited

    def childDataReceived(self, fd, data):
        if fd == 1:
            self.out += data
        else:
            self.err += data
        *complete, self._partial[fd] = (self._partial.get(fd, b"") + data).split(b"\n")
        for raw in complete:
            self._add_line(raw)

    def _add_line(self, raw):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.lines.append(line)
        for waiter in list(self._waiters):
            regex, deferred = waiter
            match = regex.search(line)
            if match:
                self._waiters.remove(waiter)
                deferred.callback(match)

    def processEnded(self, reason):
        for fd in sorted(self._partial):
            if self._partial[fd]:
                self._add_line(self._partial[fd])
        self._partial.clear()
        self.exit_code = reason.value.exitCode
        self.signal = reason.value.signal
        self._exited = True
        waiters, self._waiters = self._waiters, []
        for regex, deferred in waiters:
            deferred.errback(OutputTimeout(
                f"{self.description} exited ({self.status_text()}) before logging "
                f"a line matching {regex.pattern!r}\n{self.transcript()}"))
        self.ended.callback(self)

    def status_text(self):
        """
        :returns: how the process ended, in words.
        """
        if self.running:
            return "still running"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.exit_code}"

    def transcript(self):
        """
        :returns: the output so far, for failure messages.
        """
        return "--- output of {} ---\n{}\n--- end ---".format(self.description, "\n".join(self.lines))

    def mark(self):
        """
        :returns: a position in the output; pass it as C{since} to
            L{wait_for} to wait for a line logged after now.
        """
        return len(self.lines)

    def find(self, pattern, since=0):
        """
        :returns: the first match of C{pattern} in a line from C{since} on, or
            L{None}.
        """
        regex = re.compile(pattern)
        for line in self.lines[since:]:
            match = regex.search(line)
            if match:
                return match
        return None

    def wait_for(self, pattern, since=0, timeout=WAIT_TIMEOUT):
        """
        Wait for a line matching C{pattern} (a regular expression searched in
        each line) from position C{since} on.

        :returns: a L{Deferred} firing with the L{re.Match}, or failing with
            L{OutputTimeout} (holding the output) after C{timeout} seconds or
            when the process ends first.
        """
        regex = re.compile(pattern)
        match = self.find(regex, since)
        if match:
            return succeed(match)
        if not self.running:
            return fail(OutputTimeout(
                f"{self.description} ended ({self.status_text()}) without logging a line "
                f"matching {pattern!r}\n{self.transcript()}"))
        waiter = None

        def cancel(deferred):
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        deferred = Deferred(cancel)
        waiter = (regex, deferred)
        self._waiters.append(waiter)

        def timed_out(result, seconds):
            return fail(OutputTimeout(
                f"no line matching {pattern!r} from {self.description} within {seconds} s\n"
                f"{self.transcript()}"))

        return deferred.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)

    def cancel_waiters(self):
        """
        Drop every pending L{wait_for}, so no timer outlives the test.
        """
        for _, deferred in list(self._waiters):
            # Nobody awaits it any more: the test is over.
            deferred.addErrback(lambda failure: failure.trap(CancelledError))
            deferred.cancel()


def bounded(deferred, timeout=WAIT_TIMEOUT):
    """
    :returns: a new L{Deferred} firing with C{deferred}'s result, or failing
        with L{twisted.internet.defer.TimeoutError} after C{timeout} seconds;
        unlike C{deferred.addTimeout}, a timeout does not cancel C{deferred}
        (a process's C{ended} must still fire when the process exits).
    """
    outer = Deferred()

    def relay(result):
        if not outer.called:
            outer.callback(result)
        return result

    deferred.addBoth(relay)
    return outer.addTimeout(timeout, reactor)


class Daemon:
    """
    A running C{twistd -n --pidfile= netproxy ROLE ...} process.

    Made by L{start_daemon}.

    :ivar role: the role's name.
    :ivar process: the L{IProcessTransport}.
    :ivar output: its L{OutputCollector}.
    :ivar ports: the ports announced, by listener name (C{RelayFactory},
        C{UpperDatagramProtocol} ...).
    :ivar killed_by_test: set by L{kill}.
    """

    def __init__(self, role, args, directory, twistd_args=(), env=None, fds=None, wrapper=()):
        self.role = role
        self.args = list(args)
        self.directory = directory
        # Not the test runner's own systemd links (when it runs under
        # systemd): only those a test passes in env.
        self.env = {name: value for name, value in os.environ.items() if name not in _SYSTEMD_VARIABLES}
        self.env.update(env or {})
        self.fds = dict(fds or {})
        self.wrapper = list(wrapper)
        # twistd's own options (--logger ...), given before the role.
        self.twistd_args = list(twistd_args)
        argv = ["twistd", *self.twistd_args, "-n", "--pidfile=", "netproxy", role, *self.args]
        self.output = OutputCollector(" ".join(argv))
        self.process = None
        self.ports = {}
        self.killed_by_test = False

    def spawn(self):
        argv = [*self.wrapper, sys.executable, *TWISTD, *self.twistd_args, "-n", "--pidfile=", "netproxy",
                self.role, *self.args]
        self.process = reactor.spawnProcess(
            self.output,
            argv[0],
            argv,
            env=self.env,
            path=self.directory,
            childFDs={0: "w", 1: "r", 2: "r", **self.fds},
        )

    async def wait_listening(self, names):
        """
        Wait until every listener in C{names} has logged its port.
        """
        for name in names:
            # twistd logs "... [-] RelayFactory starting on 43123" (and
            # "UpperDatagramProtocol starting on 43124") once it listens.
            match = await self.output.wait_for(rf"\] {re.escape(name)} starting on (\d+)\s*$")
            self.ports[name] = int(match.group(1))

    @property
    def pid(self):
        return self.process.pid

    @property
    def port(self):
        """
        The TCP port of a role with one listener (relay, ack; upper's TCP port).
        """
        tcp = [port for name, port in self.ports.items() if not name.endswith("DatagramProtocol")]
        if len(tcp) != 1:
            raise AssertionError(f"{self.role} has TCP ports {self.ports}, not one")
        return tcp[0]

    @property
    def udp_port(self):
        """
        The UDP port of the upper role.
        """
        return self.ports["UpperDatagramProtocol"]

    def wait_for(self, pattern, since=0, timeout=WAIT_TIMEOUT):
        """
        See L{OutputCollector.wait_for}.
        """
        return self.output.wait_for(pattern, since, timeout)

    def mark(self):
        """
        See L{OutputCollector.mark}.
        """
        return self.output.mark()

    def send_signal(self, number):
        """
        Send a signal to the daemon (C{signal.SIGHUP}, C{signal.SIGTERM}).
        """
        os.kill(self.pid, number)

    def kill(self):
        """
        Kill the daemon with C{SIGKILL}, on purpose: the cleanup then expects
        it to have died of that signal instead of exiting 0.
        """
        self.killed_by_test = True
        self.process.signalProcess("KILL")

    async def wait_exit(self, timeout=STOP_TIMEOUT):
        """
        Wait for the daemon to exit by itself (after a signal the test sent).

        :returns: how it ended, in words: C{"exit code 0"}, C{"killed by signal 15"}.
        :raises OutputTimeout: if it is still running after C{timeout} seconds.
        """
        try:
            await bounded(self.output.ended, timeout)
        except DeferredTimeout:
            raise OutputTimeout(f"{self.role} still running after {timeout} s\n{self.output.transcript()}")
        return self.output.status_text()

    async def stop(self, timeout=STOP_TIMEOUT):
        """
        Send C{SIGTERM} and wait for the daemon to exit; C{SIGKILL} it if it
        has not exited after C{timeout} seconds.

        :returns: L{True} if it exited by itself, L{False} if it was killed.
        """
        self.output.cancel_waiters()
        if not self.output.running:
            return True
        self.send_signal(signal.SIGTERM)
        try:
            await bounded(self.output.ended, timeout)
            return True
        except DeferredTimeout:
            if self.output.running:
                self.process.signalProcess("KILL")
            await bounded(self.output.ended, timeout)
            return False

    async def cleanup(self, testcase):
        """
        The test cleanup: stop the daemon, and fail if it had to be killed,
        did not exit with status 0 (SIGTERM stops every role cleanly, with exit
        status 0), or logged a crash.
        """
        exited = await self.stop()
        if not exited:
            testcase.fail(f"{self.role} did not exit within {STOP_TIMEOUT} s of SIGTERM\n"
                          f"{self.output.transcript()}")
        expected = "killed by signal 9" if self.killed_by_test else "exit code 0"
        if self.output.status_text() != expected:
            testcase.fail(f"{self.role} ended with {self.output.status_text()}, not {expected}\n"
                          f"{self.output.transcript()}")
        crash = self.output.find(_CRASH)
        if crash:
            testcase.fail(f"{self.role} logged a crash\n{self.output.transcript()}")


async def start_daemon(testcase, role, *args, ready=None, twistd_args=(), env=None, fds=None, wrapper=()):
    """
    Start C{twistd -n --pidfile= netproxy ROLE ARGS...} in a fresh directory
    and wait until its listeners have announced their ports.  The daemon is
    stopped at the test's cleanup.

    :param testcase: the running L{TestCase}.
    :param ready: the names of the listeners to wait for; by default those
        of L{READY} for the role.
    :param twistd_args: twistd options to give before the role
        (C{("--logger", "netproxy.log_observers.json_observer")}).
    :param env: environment variables for the daemon, over the tests' own
        environment (whose systemd variables are left out).
    :param fds: more file descriptors for the daemon: its number to the
        test's descriptor (C{{3: sock.fileno()}}).
    :param wrapper: a command that runs the daemon's command line, given as
        its trailing arguments (C{("sh", "-c", 'exec "$@"', "sh")}).
    :returns: the L{Daemon}.
    """
    daemon = Daemon(role, args, fresh_directory(testcase), twistd_args, env, fds, wrapper)
    daemon.spawn()
    testcase.addCleanup(daemon.cleanup, testcase)
    await daemon.wait_listening(READY.get(role, ()) if ready is None else ready)
    return daemon


async def start_daemons(testcase, *commands):
    """
    Start several daemons at once (see L{start_daemon}).

    :param commands: one C{(role, arg, ...)} tuple per daemon.
    :returns: the L{Daemon}s, in the order of C{commands}.
    """
    starting = [Deferred.fromCoroutine(start_daemon(testcase, *command)) for command in commands]
    return await gatherResults(starting, consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)


@dataclass
class Result:
    """
    How a finished command went.

    :ivar code: the exit status, or minus the signal number that killed it.
    :ivar out: its standard output, decoded.
    :ivar err: its standard error, decoded.
    """

    code: int
    out: str
    err: str

    def __str__(self):
        return f"exit {self.code}\n--- stdout ---\n{self.out}--- stderr ---\n{self.err}--- end ---"


def client_command():
    """
    :returns: the argument list that runs C{netproxy-client} with the tests'
        interpreter: the installed console script when it sits next to the
        interpreter, else the C{main} function it wraps.
    """
    script = os.path.join(os.path.dirname(sys.executable), "netproxy-client")
    if os.path.exists(script):
        return [sys.executable, script]
    return [sys.executable, "-c", "from netproxy.cli import main; main()"]


async def run_command(argv, stdin=b"", timeout=WAIT_TIMEOUT, directory=None):
    """
    Run a command to its end.

    (Like L{twisted.internet.utils.getProcessOutputAndValue}, but a command
    that outlives C{timeout} is killed, so a hung client fails the test
    instead of hanging it.)

    :param argv: the command; C{argv[0]} is the executable.
    :param stdin: bytes written to its standard input, which is then closed.
    :returns: a L{Result}.
    :raises OutputTimeout: when it runs longer than C{timeout} seconds.
    """
    collector = OutputCollector(" ".join(argv))
    process = reactor.spawnProcess(collector, argv[0], argv, env=dict(os.environ), path=directory)
    if stdin:
        process.write(stdin)
    process.closeStdin()
    try:
        await bounded(collector.ended, timeout)
    except DeferredTimeout:
        if collector.running:
            process.signalProcess("KILL")
        await collector.ended
        raise OutputTimeout(f"{' '.join(argv)} still running after {timeout} s\n{collector.transcript()}")
    code = collector.exit_code if collector.signal is None else -collector.signal
    return Result(code, collector.out.decode("utf-8", "replace"), collector.err.decode("utf-8", "replace"))


def run_client(*args, stdin=b"", timeout=WAIT_TIMEOUT):
    """
    Run C{netproxy-client ARGS...}.

    :returns: a coroutine returning its L{Result}.
    """
    return run_command([*client_command(), *args], stdin=stdin, timeout=timeout)


def run_twistd(*args, timeout=WAIT_TIMEOUT, directory=None):
    """
    Run C{twistd ARGS...} to its end (for roles that exit by themselves, or
    options that stop start-up).

    :returns: a coroutine returning its L{Result}.
    """
    return run_command([sys.executable, *TWISTD, *args], timeout=timeout, directory=directory)


def relay_request(port, message="tgmr", host=LOCALHOST):
    """
    :returns: a relay request as naive clients send it: one JSON object, no
        newline.
    """
    return json.dumps({"server_ip": host, "server_port": port, "message": message}).encode("utf-8")


@dataclass
class RawReply:
    """
    What a blocking-socket client saw.

    :ivar data: every byte read.
    :ivar closed: the peer closed the connection (a read returned no bytes,
        or the connection was reset after the data).
    :ivar send_error: why C{sendall} failed, or L{None}.
    :ivar recv_error: why the last read failed (C{"timed out"} when the peer
        stayed silent), or L{None}.
    """

    data: bytes
    closed: bool
    send_error: str | None = None
    recv_error: str | None = None


def _receive(sock):
    """
    :returns: C{(chunk, closed, error)}: the bytes of one read, whether the
        peer closed or reset the connection, and the read's error as text
        (C{"timed out"}), or L{None}.
    """
    try:
        chunk = sock.recv(65536)
    except OSError as error:
        return b"", isinstance(error, ConnectionResetError), (
            "timed out" if isinstance(error, socket.timeout) else str(error))
    return chunk, not chunk, None


def _blocking_exchange(port, requests, until_closed, expect, shutdown, timeout, limit, source):
    source_address = None if source is None else (source, 0)
    with socket.create_connection((LOCALHOST, port), timeout=timeout, source_address=source_address) as sock:
        data = b""
        send_error = recv_error = None
        closed = False
        for request in requests:
            try:
                sock.sendall(request)
            except OSError as error:
                send_error = str(error)
                break
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
            # Read "once", as naive clients do; or until the peer closes, or
            # until the expected number of bytes came, bounded by the socket
            # timeout and by limit.
            goal = len(data) + expect if expect else None
            while len(data) < limit:
                chunk, closed, recv_error = _receive(sock)
                if closed or recv_error:
                    break
                data += chunk
                if goal is not None:
                    if len(data) >= goal:
                        break
                elif not until_closed:
                    break
            if closed or recv_error:
                break
        if send_error:
            # The peer stopped reading; what did it answer before closing?
            while len(data) < limit:
                chunk, closed, recv_error = _receive(sock)
                if closed or recv_error:
                    break
                data += chunk
        return RawReply(data, closed, send_error, recv_error)


def raw_exchange(port, *requests, until_closed=False, expect=None, shutdown=False,
                 timeout=SOCKET_TIMEOUT, limit=1 << 20, source=None):
    """
    Talk to C{127.0.0.1:port} the way naive clients do, with a blocking
    socket in a thread (so the reactor keeps reading the daemons' output):
    for each request, one C{sendall} and then one C{recv}.

    :param requests: the bytes to send, one C{sendall} each, each followed
        by reading the answer.
    :param until_closed: read until the peer closes instead of once.
    :param expect: read until this many more bytes came instead of once.
    :param shutdown: half-close the socket after sending.
    :param timeout: the socket timeout, bounding every connect, send and read.
    :param limit: stop reading after this many bytes.
    :param source: the loopback address to connect from (such as
        C{127.0.0.2}, a client outside C{127.0.0.1/32}), or L{None}.
    :returns: a L{Deferred} firing with a L{RawReply}.
    """
    return deferToThread(_blocking_exchange, port, requests, until_closed, expect, shutdown, timeout, limit, source)


async def refused_after_close(port):
    """
    Connect to C{127.0.0.1:port}, which a daemon has logged as closed.

    Twisted logs C{(TCP Port N Closed)} just before it closes the listening
    socket, so a connection made at once may still land in its backlog and
    then be reset when the socket closes; that reset proves the socket is
    gone, and the next attempt meets a closed port.

    :returns: the exception the connection ended with (a
        L{ConnectionRefusedError} once nothing listens), or the L{RawReply}
        if it was served.
    """
    outcome = await raw_exchange(port, b"").addErrback(lambda failure: failure.value)
    if isinstance(outcome, RawReply) and outcome.recv_error and not outcome.data and outcome.closed:
        outcome = await raw_exchange(port, b"").addErrback(lambda failure: failure.value)
    return outcome


def closed_port():
    """
    :returns: a loopback TCP port nothing listens on (bound for an instant,
        never listened on, then released).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


class _RecordingProtocol(Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)
        self.factory.open.add(self)
        self.received = b""
        self.lost = Deferred()
        for deferred in self.factory._connected:
            deferred.callback(self)
        self.factory._connected = []

    def dataReceived(self, data):
        self.received += data
        reply = self.factory.reply(data)
        if reply:
            self.transport.write(reply)
            if self.factory.close_after_reply:
                self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.open.discard(self)
        self.lost.callback(None)


class RecordingServer(Factory):
    """
    An in-process TCP server on 127.0.0.1 that records every connection and
    answers each chunk with C{reply(chunk)}, never closing by itself (as many
    real servers do) unless C{close_after_reply} is set.

    :ivar connections: every accepted protocol, in order; each has
        C{received} (the bytes read so far) and C{lost} (a L{Deferred}).
    :ivar port: the port it listens on.
    """

    protocol = _RecordingProtocol
    noisy = False

    def __init__(self, reply=lambda data: b"", close_after_reply=False):
        self.reply = reply
        self.close_after_reply = close_after_reply
        self.connections = []
        self.open = set()
        self._connected = []
        self.listening = None

    def next_connection(self, timeout=WAIT_TIMEOUT):
        """
        :returns: a L{Deferred} firing with the next connection accepted.
        """
        deferred = Deferred()
        self._connected.append(deferred)
        return deferred.addTimeout(timeout, reactor)

    @property
    def port(self):
        return self.listening.getHost().port

    async def probe(self, timeout=WAIT_TIMEOUT):
        """
        Connect to the server from the test and wait until it has accepted
        that connection.  The listening socket's queue is first in, first
        out: any connection made before the probe has been accepted by then.
        """
        accepted = self.next_connection(timeout)
        client = await connectProtocol(TCP4ClientEndpoint(reactor, LOCALHOST, self.port, timeout=timeout), Protocol())
        server = await accepted
        client.transport.loseConnection()
        await server.lost

    async def stop(self):
        await self.listening.stopListening()
        for protocol in list(self.open):
            protocol.transport.abortConnection()
            await protocol.lost


def start_server(testcase, reply=lambda data: b"", port=0, close_after_reply=False):
    """
    Listen with a L{RecordingServer} on C{127.0.0.1:port} until the test ends.

    :raises twisted.internet.error.CannotListenError: if the port is taken.
    :returns: the server.
    """
    server = RecordingServer(reply, close_after_reply)
    server.listening = reactor.listenTCP(port, server, interface=LOCALHOST)
    testcase.addCleanup(server.stop)
    return server


class StreamClient(Protocol):
    """
    An in-process TCP client that writes C{first} once connected and lets
    the test wait for the bytes it reads.

    :ivar received: every byte read so far.
    :ivar lost: a L{Deferred} fired when the connection has closed.
    """

    def __init__(self, first=b""):
        self.first = first
        self.received = b""
        self.lost = Deferred()
        self._waiters = []

    def connectionMade(self):
        if self.first:
            self.transport.write(self.first)

    def dataReceived(self, data):
        self.received += data
        for waiter in list(self._waiters):
            size, deferred = waiter
            if len(self.received) >= size:
                self._waiters.remove(waiter)
                deferred.callback(self.received)

    def connectionLost(self, reason):
        waiters, self._waiters = self._waiters, []
        for size, deferred in waiters:
            deferred.errback(AssertionError(
                f"connection closed after {self.received!r}, expected {size} bytes"))
        self.lost.callback(None)

    def wait_for_bytes(self, size, timeout=WAIT_TIMEOUT):
        """
        :returns: a L{Deferred} firing with everything read once at least
            C{size} bytes have been read in all; it fails if the connection
            closes first or after C{timeout} seconds.
        """
        if len(self.received) >= size:
            return succeed(self.received)
        if self.lost.called:
            return fail(AssertionError(f"connection closed after {self.received!r}, expected {size} bytes"))
        waiter = None

        def cancel(deferred):
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        deferred = Deferred(cancel)
        waiter = (size, deferred)
        self._waiters.append(waiter)
        return deferred.addTimeout(timeout, reactor)


async def connect_client(testcase, port, first=b"", timeout=WAIT_TIMEOUT):
    """
    Connect a L{StreamClient} to C{127.0.0.1:port}; it is disconnected at the
    test's cleanup.

    :returns: the connected L{StreamClient}.
    """
    return await connect_endpoint(testcase, TCP4ClientEndpoint(reactor, LOCALHOST, port, timeout=timeout), first)


async def connect_endpoint(testcase, endpoint, first=b""):
    """
    Connect a L{StreamClient} through C{endpoint} (another source address,
    a Unix socket); it is disconnected at the test's cleanup.

    :returns: the connected L{StreamClient}.
    """
    client = await connectProtocol(endpoint, StreamClient(first))

    async def disconnect():
        if not client.lost.called:
            client.transport.abortConnection()
        await client.lost

    testcase.addCleanup(disconnect)
    return client


def _blocking_datagram(port, data, timeout):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (LOCALHOST, port))
        reply, address = sock.recvfrom(65536)
        return reply, address


def raw_datagram(port, data, timeout=SOCKET_TIMEOUT):
    """
    Send one UDP datagram to C{127.0.0.1:port} from a blocking socket in a
    thread and read one datagram back.

    :returns: a L{Deferred} firing with C{(reply, sender address)}; it fails
        with L{socket.timeout} when nothing comes back within C{timeout}
        seconds.
    """
    return deferToThread(_blocking_datagram, port, data, timeout)


def upper_ascii(data):
    """
    :returns: C{data} with the bytes a-z turned into A-Z and every other byte
        as it was: what the upper server must answer.
    """
    return bytes(byte - 32 if 0x61 <= byte <= 0x7A else byte for byte in data)
