"""
End-to-end tests of the SOCKS role: a real C{twistd netproxy socks} in front
of an in-process HTTP origin, driven by curl (C{--socks5-hostname},
C{--socks5}, C{--proxy-user}), by the python-socks client library (in a
thread: it blocks) and by raw sockets sending what no client should.
"""

import hashlib
import os
import shutil
import signal
import socket
import tempfile

import bcrypt
from python_socks import ProxyError, ProxyType
from python_socks.sync import Proxy
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.daemon import LISTEN, LOCALHOST, SOCKET_TIMEOUT, WAIT_TIMEOUT, fresh_directory, run_command, \
    start_daemon
from tests.integration.http_origin import pattern_digest, start_origin
from tests.integration.test_systemd import notify_socket
from tests.integration.test_workers import MAX_TRIES, served_by, start_workers
from tests.metrics_helpers import samples as page_samples

READY = ("SocksFactory",)
# Cost 4: the tests are about the flow; the check still runs in the thread pool.
ALICE = "alice:" + bcrypt.hashpw(b"alice's secret", bcrypt.gensalt(4)).decode("ascii")
SIZE = 300_000


def curl_command():
    """
    :returns: curl's path.
    :raises SkipTest: without curl (.ci/run installs it).
    """
    curl = shutil.which("curl")
    if curl is None:
        raise SkipTest("curl is not installed")
    return curl


async def curl(proxy_option, proxy_port, url, *extra):
    """
    Fetch C{url} with curl through the SOCKS proxy.

    :param proxy_option: C{--socks5-hostname} or C{--socks5}.
    :returns: the L{tests.integration.daemon.Result}, and the body's
        SHA-256 then the status, as C{(result, (digest, status))}.
    """
    directory = tempfile.mkdtemp()
    try:
        body = os.path.join(directory, "body")
        result = await run_command([curl_command(), "--silent", "--show-error", "--noproxy", "", proxy_option,
                                    f"{LOCALHOST}:{proxy_port}", "--max-time", str(WAIT_TIMEOUT), *extra,
                                    "--output", body, "--write-out", "%{http_code}", url])
        digest = None
        if os.path.exists(body):
            with open(body, "rb") as file:
                digest = hashlib.sha256(file.read()).hexdigest()
        return result, (digest, result.out)
    finally:
        shutil.rmtree(directory)


def exchange(port, data, read=True):
    """
    Send C{data} to the proxy on a blocking socket, and read until it closes.

    :returns: what came back.
    """
    with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def library_fetch(proxy_port, password, host, port, path):
    """
    Fetch C{path} from C{host:port} with python-socks through the proxy as
    alice, in plain blocking calls (run it in a thread).

    :returns: the raw HTTP response.
    """
    proxy = Proxy(ProxyType.SOCKS5, LOCALHOST, proxy_port, username="alice", password=password, rdns=True)
    sock = proxy.connect(dest_host=host, dest_port=port, timeout=SOCKET_TIMEOUT)
    with sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


class SocksTestCase(TestCase):
    """
    A SOCKS role and an origin.
    """

    async def start(self, *args, origin=None):
        """
        Start the SOCKS role with C{args} and its access log on stdout, and
        an origin unless one is given.

        :returns: C{(proxy, origin)}.
        """
        origin = start_origin(self) if origin is None else origin
        proxy = await start_daemon(self, "socks", "--listen", LISTEN, "--access-log", "-", *args, ready=READY)
        return proxy, origin


class CurlTests(SocksTestCase):
    """
    curl through the SOCKS role.
    """

    async def test_socks5_hostname(self):
        """curl --socks5-hostname (the proxy resolves) downloads a body intact; one access line per tunnel."""
        proxy, origin = await self.start("--allow-local")
        url = f"http://localhost:{origin.port}/fixed?size={SIZE}"
        result, got = await curl("--socks5-hostname", proxy.port, url)
        self.assertEqual((result.code, got), (0, (pattern_digest(SIZE), "200")), result)
        line = await proxy.wait_for(rf"^127\.0\.0\.1 - \[[^]]+\] CONNECT localhost:{origin.port} "
                                    rf"127\.0\.0\.1:{origin.port} 0 (\d+) (\d+) \d+\.\d+$")
        self.assertGreater(int(line.group(2)), SIZE)
        await proxy.wait_for(rf"CONNECT localhost:{origin.port} established \(127\.0\.0\.1:{origin.port}\)")

    async def test_socks5(self):
        """curl --socks5 (curl resolves, sends the address) works too."""
        proxy, origin = await self.start("--allow-local")
        result, got = await curl("--socks5", proxy.port, f"http://localhost:{origin.port}/fixed?size=1000")
        self.assertEqual((result.code, got), (0, (pattern_digest(1000), "200")), result)

    async def test_ipv6(self):
        """An origin on ::1 only is reached by its IPv6 literal (address type 4); without --allow-local it is
        refused with reply 2."""
        origin = start_origin(self, interface="::1")
        proxy, origin = await self.start("--allow-local", origin=origin)
        result, got = await curl("--socks5", proxy.port, f"http://[::1]:{origin.port}/fixed?size=1000")
        self.assertEqual((result.code, got), (0, (pattern_digest(1000), "200")), result)
        await proxy.wait_for(rf"CONNECT \[::1\]:{origin.port} established \(\[::1\]:{origin.port}\)")
        strict = await start_daemon(self, "socks", "--listen", LISTEN, ready=READY)
        result, got = await curl("--socks5", strict.port, f"http://[::1]:{origin.port}/")
        self.assertEqual(result.code, 97, result)
        await strict.wait_for(r"reply 2: destination \[::1\]:\d+ is this host: ::1 is a loopback address")

    async def test_local_refused(self):
        """Without --allow-local, a destination on this host gets reply 2, by address and by name."""
        proxy, origin = await self.start()
        for option, host in (("--socks5", "127.0.0.1"), ("--socks5-hostname", "localhost")):
            result, got = await curl(option, proxy.port, f"http://{host}:{origin.port}/fixed?size=10")
            self.assertEqual(result.code, 97, result)  # curl: the proxy refused
            self.assertIn("(2)", result.err)
        await proxy.wait_for(r"reply 2: destination localhost:\d+ is this host: it resolves to 127\.0\.0\.1")
        self.assertEqual(origin.connections, 0)

    async def test_block(self):
        """--block refuses a destination by name or by port with reply 2."""
        origin = start_origin(self)
        proxy, origin = await self.start("--allow-local", "--block", "*.invalid", "--block", f"*:{origin.port}",
                                         origin=origin)
        result, got = await curl("--socks5-hostname", proxy.port, "http://www.example.invalid/")
        self.assertEqual(result.code, 97, result)
        await proxy.wait_for(r"reply 2: destination www\.example\.invalid:80 is blocked by rule \*\.invalid")
        result, got = await curl("--socks5", proxy.port, f"http://127.0.0.1:{origin.port}/")
        self.assertEqual(result.code, 97, result)
        await proxy.wait_for(rf"reply 2: destination 127\.0\.0\.1:{origin.port} is blocked")
        self.assertEqual(origin.connections, 0)

    async def test_refused_connection(self):
        """A destination port nobody listens on gets reply 5."""
        proxy, origin = await self.start("--allow-local")
        port = closed_port()
        result, got = await curl("--socks5", proxy.port, f"http://127.0.0.1:{port}/")
        self.assertEqual(result.code, 97, result)
        await proxy.wait_for(rf"reply 5: could not connect to 127\.0\.0\.1:{port}: connection refused")


def closed_port():
    """
    :returns: a loopback port with no listener (bound, then closed).
    """
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


class AuthTests(SocksTestCase):
    """
    Username/password logins from --auth-file.
    """

    async def start_with_users(self):
        directory = FilePath(fresh_directory(self))
        users = directory.child("users")
        users.setContent((ALICE + "\n").encode())
        return await self.start("--allow-local", "--auth-file", users.path)

    async def test_curl_login(self):
        """curl --proxy-user with the right password gets through; the access line names the user."""
        proxy, origin = await self.start_with_users()
        result, got = await curl("--socks5-hostname", proxy.port, f"http://localhost:{origin.port}/fixed?size=1000",
                                 "--proxy-user", "alice:alice's secret")
        self.assertEqual((result.code, got), (0, (pattern_digest(1000), "200")), result)
        await proxy.wait_for(rf"^127\.0\.0\.1 alice \[[^]]+\] CONNECT localhost:{origin.port} ")

    async def test_wrong_password(self):
        """A wrong password gets RFC 1929 status 1 and a close; curl reports it; the origin sees nothing."""
        proxy, origin = await self.start_with_users()
        result, got = await curl("--socks5-hostname", proxy.port, f"http://localhost:{origin.port}/",
                                 "--proxy-user", "alice:wrong")
        self.assertEqual(result.code, 97, result)
        reply = await deferToThread(exchange, proxy.port, b"\x05\x01\x02" + b"\x01\x05alice\x05wrong")
        self.assertEqual(reply, b"\x05\x02\x01\x01")
        await proxy.wait_for(r"wrong password for user alice")
        self.assertEqual(origin.connections, 0)

    async def test_login_required(self):
        """Without credentials, a client offering no login method gets 0xFF and a close."""
        proxy, origin = await self.start_with_users()
        result, got = await curl("--socks5-hostname", proxy.port, f"http://localhost:{origin.port}/")
        self.assertNotEqual(result.code, 0, result)
        reply = await deferToThread(exchange, proxy.port, b"\x05\x01\x00")
        self.assertEqual(reply, b"\x05\xff")

    async def test_library(self):
        """The python-socks client library logs in and fetches through the proxy; a bad password raises."""
        proxy, origin = await self.start_with_users()
        response = await deferToThread(library_fetch, proxy.port, "alice's secret", "localhost", origin.port,
                                       "/fixed?size=5000")
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(hashlib.sha256(body).hexdigest(), pattern_digest(5000))
        failure = None
        try:
            await deferToThread(library_fetch, proxy.port, "nope", "localhost", origin.port, "/")
        except ProxyError as error:
            failure = error
        self.assertIsNotNone(failure)


class HostileTests(SocksTestCase):
    """
    Bad input is refused and logged, and the daemon serves everyone else.
    """

    async def test_keeps_serving(self):
        """Garbage, a SOCKS4 request, an HTTP request, a truncated greeting, BIND and an unknown command each
        get their answer, and curl still gets through afterwards."""
        proxy, origin = await self.start("--allow-local", "--handshake-timeout", "2")
        cases = [
            (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b""),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
            (b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00\x05\x07\x00\x01" + bytes(6)),
            (b"\x05\x01\x00\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00\x05\x07\x00\x01" + bytes(6)),
            (b"\x05\x01\x00\x05\x01\x00\x09" + bytes(10), b"\x05\x00\x05\x08\x00\x01" + bytes(6)),
            (b"\x05\x01\x00\x05\x01\x00\x03\x04a\nbc\x00\x50", b"\x05\x00\x05\x01\x00\x01" + bytes(6)),
            (b"\x05\x01\x00" + b"\xff" * 200_000, b"\x05\x00"),
            (b"\x05\x05\x00", b""),  # truncated: closed at the handshake deadline
        ]
        for data, expected in cases:
            reply = await deferToThread(exchange, proxy.port, data)
            self.assertEqual(reply[:len(expected) + 16], expected, data[:20])
        await proxy.wait_for(r"negotiation not finished within 2 seconds")
        result, got = await curl("--socks5-hostname", proxy.port, f"http://localhost:{origin.port}/fixed?size=1000")
        self.assertEqual((result.code, got), (0, (pattern_digest(1000), "200")), result)


class MetricsTests(SocksTestCase):
    """
    The --metrics page.
    """

    async def test_page(self):
        """--metrics serves the role's counters on their own listener."""
        origin = start_origin(self)
        proxy = await start_daemon(self, "socks", "--listen", LISTEN, "--allow-local", "--metrics", LISTEN,
                                   ready=("Site", *READY))
        result, got = await curl("--socks5-hostname", proxy.ports["SocksFactory"],
                                 f"http://localhost:{origin.port}/fixed?size=1000")
        self.assertEqual(result.code, 0, result)
        response = await deferToThread(exchange, proxy.ports["Site"], b"GET /metrics HTTP/1.0\r\n\r\n")
        head, _, page = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        samples = page_samples(page)
        self.assertEqual(samples[("netproxy_socks_requests_total", (("command", "CONNECT"), ("reply", "0")))], 1)
        self.assertGreater(samples[("netproxy_socks_sent_bytes_total", ())], 1000)


class OperationsTests(SocksTestCase):
    """
    SIGHUP, SIGTERM under systemd, and workers, as every role has them.
    """

    timeout = 60

    async def test_reload_blocklist(self):
        """SIGHUP re-reads --blocklist: a destination allowed before is refused after, without a restart."""
        directory = FilePath(fresh_directory(self))
        blocklist = directory.child("blocklist")
        blocklist.setContent(b"# nothing blocked yet\n")
        proxy, origin = await self.start("--allow-local", "--blocklist", blocklist.path)
        url = f"http://localhost:{origin.port}/fixed?size=100"
        result, got = await curl("--socks5-hostname", proxy.port, url)
        self.assertEqual(result.code, 0, result)
        blocklist.setContent(b"localhost\n")
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"reloaded 1 rules from", since)
        result, got = await curl("--socks5-hostname", proxy.port, url)
        self.assertEqual(result.code, 97, result)
        await proxy.wait_for(r"reply 2: destination localhost:\d+ is blocked by rule localhost", since)

    async def test_systemd(self):
        """Under systemd: READY=1 once listening; on SIGTERM, STOPPING=1, an open tunnel is cut at
        --shutdown-timeout, and the exit status is 0."""
        receiver = notify_socket(self)
        origin = start_origin(self)
        proxy = await start_daemon(self, "socks", "--listen", LISTEN, "--allow-local", "--shutdown-timeout", "1",
                                   env={"NOTIFY_SOCKET": receiver.address}, ready=READY)
        await receiver.wait_for("READY")
        sock = await deferToThread(open_tunnel, proxy.port, origin.port)
        self.addCleanup(sock.close)
        await proxy.wait_for(r"CONNECT 127\.0\.0\.1:\d+ established")
        proxy.send_signal(signal.SIGTERM)
        await receiver.wait_for("STOPPING")
        await proxy.wait_for(r"aborting connection from 127\.0\.0\.1:\d+, still busy")
        self.assertEqual(await proxy.wait_exit(), "exit code 0", proxy.output.transcript())
        self.assertEqual(receiver.names(), ["READY=1", "STOPPING=1"])

    async def test_workers(self):
        """With --workers 2 both workers serve tunnels on the one port, and name themselves in the access log."""
        origin = start_origin(self)
        proxy = await start_workers(self, "socks", "--listen", LISTEN, "--allow-local", "--access-log", "-")
        url = f"http://localhost:{origin.port}/fixed?size=100"
        since = proxy.mark()
        seen = set()
        for attempt in range(MAX_TRIES):
            results = await gatherResults([Deferred.fromCoroutine(curl("--socks5-hostname", proxy.ports["held"], url))
                                           for _ in range(4)])
            for result, got in results:
                self.assertEqual((result.code, got), (0, (pattern_digest(100), "200")), result)
            seen = served_by(proxy, since)
            if seen == {0, 1}:
                break
        self.assertEqual(seen, {0, 1})


def open_tunnel(proxy_port, origin_port):
    """
    Open a tunnel to the origin through the proxy, on a blocking socket.

    :returns: the socket, its tunnel established.
    """
    sock = socket.create_connection((LOCALHOST, proxy_port), timeout=SOCKET_TIMEOUT)
    sock.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + origin_port.to_bytes(2, "big"))
    received = b""
    while len(received) < 12:
        chunk = sock.recv(64)
        if not chunk:
            break
        received += chunk
    if received[:4] != b"\x05\x00\x05\x00":
        sock.close()
        raise AssertionError(f"no tunnel: {received!r}")
    return sock


class UDPEcho(DatagramProtocol):
    """
    Answers every datagram with C{echo: } and the datagram.
    """

    def datagramReceived(self, data, address):
        self.transport.write(b"echo: " + data, address)


def udp_exchange(proxy_port, destination, payload):
    """
    Make a UDP association through the proxy, send C{payload} to
    C{destination} through it, and wait for one datagram back.

    :returns: the datagram the relay sent back, header included.
    """
    with socket.create_connection((LOCALHOST, proxy_port), timeout=SOCKET_TIMEOUT) as control, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.bind((LOCALHOST, 0))
        control.sendall(b"\x05\x01\x00\x05\x03\x00\x01" + socket.inet_aton(LOCALHOST)
                        + sock.getsockname()[1].to_bytes(2, "big"))
        reply = b""
        while len(reply) < 12:
            chunk = control.recv(64)
            if not chunk:
                raise AssertionError(f"no association: {reply!r}")
            reply += chunk
        if reply[:4] != b"\x05\x00\x05\x00" or reply[5] != 1:
            raise AssertionError(f"no association: {reply!r}")
        relay = (socket.inet_ntoa(reply[6:10]), int.from_bytes(reply[10:12], "big"))
        host, port = destination
        sock.sendto(b"\x00\x00\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big") + payload, relay)
        return sock.recv(65536)


def udp_send(proxy_port, destination, payload):
    """
    Make a UDP association and send one datagram through it, expecting no
    answer.

    :returns: the control connection and the UDP socket, for the test to
        close once the daemon has seen the datagram.
    """
    control = socket.create_connection((LOCALHOST, proxy_port), timeout=SOCKET_TIMEOUT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.sendall(b"\x05\x01\x00\x05\x03\x00\x01" + bytes(6))
    reply = b""
    while len(reply) < 12:
        chunk = control.recv(64)
        if not chunk:
            raise AssertionError(f"no association: {reply!r}")
        reply += chunk
    relay = (socket.inet_ntoa(reply[6:10]), int.from_bytes(reply[10:12], "big"))
    host, port = destination
    sock.sendto(b"\x00\x00\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big") + payload, relay)
    return control, sock


class UDPTests(SocksTestCase):
    """
    UDP ASSOCIATE through a real daemon, with a UDP echo server.
    """

    def echo(self):
        port = reactor.listenUDP(0, UDPEcho(), interface=LOCALHOST)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def test_echo(self):
        """A datagram goes through the relay to the echo server, and its answer comes back with a header; the
        association is one access line."""
        echo = self.echo()
        proxy, origin = await self.start("--allow-local")
        answer = await deferToThread(udp_exchange, proxy.port, (LOCALHOST, echo), b"ping \x00\xff")
        header = b"\x00\x00\x00\x01" + socket.inet_aton(LOCALHOST) + echo.to_bytes(2, "big")
        self.assertEqual(answer, header + b"echo: ping \x00\xff")
        await proxy.wait_for(r"^127\.0\.0\.1 - \[[^]]+\] UDP-ASSOCIATE 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ 0 7 13 ")

    async def test_local_refused(self):
        """Without --allow-local, a datagram to this host is dropped and logged."""
        echo = self.echo()
        proxy, origin = await self.start()
        control, sock = await deferToThread(udp_send, proxy.port, (LOCALHOST, echo), b"ping")
        self.addCleanup(control.close)
        self.addCleanup(sock.close)
        await proxy.wait_for(r"UDP datagram dropped: a refused destination \(127\.0\.0\.1 is a loopback address\)")

    async def test_no_udp(self):
        """With --no-udp, UDP ASSOCIATE gets reply 7."""
        proxy, origin = await self.start("--no-udp")
        reply = await deferToThread(exchange, proxy.port, b"\x05\x01\x00\x05\x03\x00\x01" + bytes(6))
        self.assertEqual(reply, b"\x05\x00\x05\x07\x00\x01" + bytes(6))
