"""
Peers for the end-to-end tests of the message reverse proxy: starting
C{twistd netproxy reverse} and C{twistd netproxy server} daemons until the
servers are registered, and third-party style peers written with plain
blocking sockets (run in threads, so the reactor keeps reading the daemons'
output): clients that read an answer line, servers that send their setup,
close, and only then listen; servers on other loopback addresses
(127.0.0.2 ...), which the reverse proxy takes for other hosts; black holes
that accept and never answer.

Every blocking call is bounded by L{SOCKET_TIMEOUT}.
"""

import hashlib
import json
import socket
import threading

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread

from tests.integration.daemon import (
    _CRASH,
    LISTEN,
    LOCALHOST,
    SOCKET_TIMEOUT,
    STOP_TIMEOUT,
    Daemon,
    fresh_directory,
    start_daemon,
)

REVERSE_READY = ("ReverseFactory",)
SERVER_READY = ("BackendFactory",)

# The most a peer here reads before giving up on a message or an answer.
READ_LIMIT = 1 << 20


def sha1_hex(payload):
    """
    :returns: the SHA-1 hex digest of C{payload}'s UTF-8 bytes: what an ack carries.
    """
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def data_message(policy, payload, srcid=50, key="privPoliId"):
    """
    :returns: a type 0 data message, as the reverse proxy's clients send it.
    """
    return {"type": 0, "srcid": srcid, key: policy, "payloadsize": len(payload.encode("utf-8")), "payload": payload}


def encode(message):
    """
    :returns: C{message} as naive peers send it: JSON, no newline.
    """
    return json.dumps(message).encode("utf-8")


def registered_line(server_id, policy, port):
    """
    :returns: a regular expression for the reverse proxy's log line of that registration.
    """
    return rf"Receiving setup message from server id {server_id} privacy policy {policy} port {port}$"


async def start_reverse(testcase, *args, listen=LISTEN):
    """
    Start C{twistd netproxy reverse --listen LISTEN ARGS...} and wait until it listens.

    :returns: the L{tests.integration.daemon.Daemon}.
    """
    return await start_daemon(testcase, "reverse", "--listen", listen, *args, ready=REVERSE_READY)


async def start_backend(testcase, reverse, server_id, policy):
    """
    Start C{twistd netproxy server} for C{reverse} and wait until the reverse
    proxy has logged its registration.

    :returns: the server's L{tests.integration.daemon.Daemon}.
    """
    server = await start_daemon(testcase, "server", "--id", str(server_id), "--pp", policy, "--listen", LISTEN,
                                "--revproc", str(reverse.port), ready=SERVER_READY)
    await reverse.wait_for(registered_line(server_id, policy, server.port))
    return server


async def start_killable_backend(testcase, reverse, server_id, policy):
    """
    Like L{start_backend}, for a server the test will kill with L{kill}.

    (The harness's own cleanup fails a test whose daemon did not exit with
    status 0, which a server killed on purpose cannot do.)  At cleanup the
    server must have exited with status 0 after SIGTERM, or have been killed
    by the test's SIGKILL, and never have logged a crash.

    :returns: the server's L{tests.integration.daemon.Daemon}.
    """
    args = ("--id", str(server_id), "--pp", policy, "--listen", LISTEN, "--revproc", str(reverse.port))
    server = Daemon("server", args, fresh_directory(testcase))
    server.killed_by_test = False
    server.spawn()
    testcase.addCleanup(_cleanup_killable, testcase, server)
    await server.wait_listening(SERVER_READY)
    await reverse.wait_for(registered_line(server_id, policy, server.port))
    return server


def kill(daemon):
    """
    Kill a daemon started by L{start_killable_backend} with SIGKILL.
    """
    daemon.killed_by_test = True
    daemon.process.signalProcess("KILL")


async def _cleanup_killable(testcase, daemon):
    exited = await daemon.stop()
    if not exited:
        testcase.fail(f"{daemon.role} did not exit within {STOP_TIMEOUT} s of SIGTERM\n{daemon.output.transcript()}")
    expected = "killed by signal 9" if daemon.killed_by_test else "exit code 0"
    if daemon.output.status_text() != expected:
        testcase.fail(f"{daemon.role} ended with {daemon.output.status_text()}, not {expected}\n"
                      f"{daemon.output.transcript()}")
    if daemon.output.find(_CRASH):
        testcase.fail(f"{daemon.role} logged a crash\n{daemon.output.transcript()}")


async def start_backends(testcase, reverse, *servers):
    """
    Start several servers at once (see L{start_backend}).

    :param servers: C{(server_id, policy)} pairs.
    :returns: their daemons, in the order given.
    """
    starting = [Deferred.fromCoroutine(start_backend(testcase, reverse, *server)) for server in servers]
    return await gatherResults(starting, consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)


def _read_line(sock):
    data = b""
    while b"\n" not in data and len(data) < READ_LIMIT:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the reverse proxy closed the connection after {data!r}")
        data += chunk
    line, newline, rest = data.partition(b"\n")
    if rest:
        raise AssertionError(f"more than one line came back: {data!r}")
    return json.loads(line)


def _ask(port, messages, barrier):
    with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT) as sock:
        if barrier is not None:
            barrier.wait(SOCKET_TIMEOUT)
        answers = []
        for message in messages:
            sock.sendall(encode(message))
            answers.append(_read_line(sock))
        return answers


def ask(port, *messages, barrier=None):
    """
    Send each message on one new connection to C{127.0.0.1:port}, no
    newline, and read its answer line before sending the next.

    :param barrier: a L{threading.Barrier} to wait at once connected, so
        that several clients send at the same moment.
    :returns: a L{Deferred} firing with the decoded answers.
    """
    return deferToThread(_ask, port, messages, barrier)


async def ask_concurrently(port, messages):
    """
    Send each message from its own client, all connected before any sends.

    :returns: the answers, one per message, in order.
    """
    barrier = threading.Barrier(len(messages))
    asking = [ask(port, message, barrier=barrier) for message in messages]
    answers = await gatherResults(asking, consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)
    return [answer for (answer,) in answers]


def _send_and_close(port, data):
    with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(data)


def send_and_close(port, data):
    """
    Connect to C{127.0.0.1:port}, send C{data} and close at once, as
    third-party servers send their setup.

    :returns: a L{Deferred} firing once the connection is closed.
    """
    return deferToThread(_send_and_close, port, data)


def _setup_from(source, port, messages):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.bind((source, 0))
        sock.connect((LOCALHOST, port))
        sock.sendall(b"\n".join(encode(message) for message in messages))
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < READ_LIMIT:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
        return reply


def setup_from(source, port, *messages):
    """
    Send setup messages to the reverse proxy at C{127.0.0.1:port} from the
    loopback address C{source} (so it sees another host when that is not
    127.0.0.1), one per line, then half-close and read until it closes.

    :returns: a L{Deferred} firing with the bytes it answered.
    """
    return deferToThread(_setup_from, source, port, messages)


def setup_message(server_id, policy, port):
    """
    :returns: a type 1 setup message, as naive servers send it.
    """
    return {"type": "1", "id": str(server_id), "privPolyId": policy, "listenport": str(port)}


def _read_message(conn):
    data = b""
    while len(data) < READ_LIMIT:
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError(f"the reverse proxy closed the connection after {data!r}")
        data += chunk
        try:
            return data, json.loads(data)
        except ValueError:
            continue
    raise AssertionError(f"no complete message in {len(data)} bytes")


class FakeServer:
    """
    A server as third-party code writes it, with a blocking socket: it is
    bound at once (so its port is known, and refuses connections), listens
    only when told, and takes one connection at a time, reading one message
    on each and answering it.

    :ivar host: its loopback address (127.0.0.1 unless told).
    :ivar port: its port there.
    :ivar received: the raw bytes of each message, one per connection.
    :ivar closed_by_peer: for each connection, whether the reverse proxy closed it after the answer.
    """

    def __init__(self, testcase, host=LOCALHOST):
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(SOCKET_TIMEOUT)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.closed_by_peer = []
        testcase.addCleanup(self.sock.close)

    def setup(self, server_id, policy, reverse_port, **fields):
        """
        Register with the reverse proxy the way backend servers in the wild do:
        every field a string, the setup connection closed at once.

        :returns: a L{Deferred} firing once the setup connection is closed.
        """
        message = {"type": "1", "id": str(server_id), "privPolyId": policy, "listenport": str(self.port), **fields}
        if self.host == LOCALHOST:
            return send_and_close(reverse_port, encode(message))
        return setup_from(self.host, reverse_port, message)

    def black_hole(self):
        """
        Listen without ever accepting: the system completes every connection
        and takes the message, and no answer ever comes.
        """
        self.sock.listen(64)

    def connections_made(self):
        """
        Take, without blocking, the connections a black hole has been sent
        (closed or not), and close them.

        :returns: how many there were.
        """
        self.sock.setblocking(False)
        count = 0
        try:
            while count < READ_LIMIT:
                conn, _ = self.sock.accept()
                conn.close()
                count += 1
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        return count

    def serve(self, connections, answer, wait_for_close=False):
        """
        Listen, then take C{connections} connections one after another: read
        one message from each, write C{answer(message)} (bytes) and close it.

        :param wait_for_close: before closing, wait for the reverse proxy to
            close the connection (recorded in C{closed_by_peer}).
        :returns: a L{Deferred} firing with C{received} when done.
        """
        self.sock.listen(8)
        return deferToThread(self._serve, connections, answer, wait_for_close)

    def _serve(self, connections, answer, wait_for_close):
        for _ in range(connections):
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(SOCKET_TIMEOUT)
                raw, message = _read_message(conn)
                self.received.append(raw)
                conn.sendall(answer(message))
                if wait_for_close:
                    try:
                        self.closed_by_peer.append(conn.recv(1) == b"")
                    except OSError:
                        self.closed_by_peer.append(False)
        return self.received


def naive_ack(server_id):
    """
    :returns: an C{answer} for L{FakeServer.serve}: the ack a naive server
        builds by hand, every field a string, no spaces, no newline.
    """
    def answer(message):
        digest = sha1_hex(message["payload"])
        return (f'{{"type":"2","srcid":"{server_id}","destid":"{message["srcid"]}",'
                f'"payloadsize":"{len(digest)}","payload":"{digest}"}}').encode("utf-8")
    return answer
