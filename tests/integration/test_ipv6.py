"""
End-to-end tests of IPv6 through real C{twistd} processes: the HTTP proxy
fetching from an origin that listens on C{::1} only (with curl and with
Twisted's L{ProxyAgent}), refusing it without C{--allow-local}, listening on a C{tcp6:}
endpoint for IPv6 clients, tunnelling C{CONNECT [::1]:port}; the relay
relaying to C{::1}; malformed IPv6 literals answered, never crashed on.

The tests are skipped on a machine that cannot bind C{::1}.

Requests go through L{ProxyAgent} itself rather than treq: treq hands URLs
to hyperlink, whose C{to_uri} sends an IPv6 host through IDNA and fails
(hyperlink issue 68).
"""

import json
import re
import shutil
import socket

from twisted.internet import reactor
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.web.client import ProxyAgent

from tests.integration.daemon import (
    LISTEN,
    LOCALHOST,
    SOCKET_TIMEOUT,
    WAIT_TIMEOUT,
    RecordingServer,
    bounded,
    fresh_directory,
    run_command,
    start_daemon,
    start_daemons,
)
from tests.integration.http_client import (
    PROXY_READY,
    Body,
    HttpTestCase,
    access_line,
    connect_through,
    parse_replies,
    proxy_agent,
    start_local_proxy,
    start_proxy,
)
from tests.integration.http_origin import body_of, start_origin

LOOPBACK6 = "::1"
# A listening endpoint on an ephemeral port of the IPv6 loopback.
LISTEN6 = r"tcp6:0:interface=\:\:1"


def _ipv6_loopback():
    # Whether this machine has an IPv6 loopback to bind, checked once.
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK6, 0))
    except OSError:
        return False
    return True


SKIP = None if _ipv6_loopback() else "this machine has no IPv6 loopback (::1) to listen on"


def _exchange(host, port, data, until_closed, expect, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(data)
        received = b""
        while len(received) < 1 << 20:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            received += chunk
            if not until_closed and (expect is None or len(received) >= expect):
                break
        return received


def exchange(host, port, data, until_closed=True, expect=None, timeout=SOCKET_TIMEOUT):
    """
    Send C{data} to C{host:port} (IPv4 or IPv6) from a blocking socket in a
    thread, and read until the peer closes (or once, or C{expect} bytes).

    :returns: a L{Deferred} firing with the bytes read.
    """
    return deferToThread(_exchange, host, port, data, until_closed, expect, timeout)



def listen_echo(testcase):
    """
    Listen on C{::1}, port 0, with a server echoing every chunk, until the
    test ends.

    :returns: the L{RecordingServer}.
    """
    server = RecordingServer(reply=lambda data: data)
    server.listening = reactor.listenTCP(0, server, interface=LOOPBACK6)
    testcase.addCleanup(server.stop)
    return server


async def get(agent, url):
    """
    GET C{url} (L{str}) through C{agent}, a L{ProxyAgent}, and read the
    whole response.

    :returns: C{(response, body)}, the body a L{Body}.
    """
    response = await bounded(agent.request(b"GET", url.encode("ascii")))
    received = Body()
    response.deliverBody(received)
    await bounded(received.done)
    return response, received


def ipv6_access_line(method, url, status):
    """
    :returns: a regular expression matching an access log line for a
        request from C{::1}, written as it is, without brackets.
    """
    return rf'^::1 - \S+ \[[^]]+\] "{method} {re.escape(url)} HTTP/1\.[01]" {status} \d+ "[^"]*" "[^"]*" \S+ \d+\.\d+$'


class HttpIPv6Tests(HttpTestCase):
    """
    The HTTP proxy with IPv6 origins, clients and CONNECT targets.
    """

    skip = SKIP

    async def test_curl_ipv6_only_origin(self):
        """
        curl through the proxy fetches C{http://[::1]:PORT/} from an origin listening on ::1 only.
        """
        origin = start_origin(self, interface=LOOPBACK6)
        proxy = await start_proxy(self)
        url = origin.url("/fixed?size=1000")
        self.assertTrue(url.startswith("http://[::1]:"), url)
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        since = proxy.mark()
        output = FilePath(fresh_directory(self)).child("body")
        result = await run_command([curl, "--silent", "--show-error", "--noproxy", "", "--proxy",
                                    f"http://{LOCALHOST}:{proxy.port}", "--max-time", str(WAIT_TIMEOUT),
                                    "--output", output.path, "--write-out", "%{http_code}", url])
        self.assertEqual((result.code, result.out), (0, "200"), result)
        self.assertEqual(output.getContent(), body_of(1000))
        await proxy.wait_for(access_line("GET", url, 200), since)

    async def test_agent_ipv6_only_origin(self):
        """
        An HTTP client library through the proxy reaches the ::1 origin, which sees the Host field in brackets.
        """
        origin = start_origin(self, interface=LOOPBACK6)
        proxy = await start_proxy(self)
        response, received = await get(proxy_agent(proxy.port), origin.url("/echo"))
        self.assertEqual(response.code, 200)
        seen = json.loads(received.body)
        self.assertIn(["host", f"[::1]:{origin.port}"], seen["headers"])
        self.assertEqual(origin.connections, 1)

    async def test_refused_without_allow_local(self):
        """
        Without --allow-local, every spelling of ::1 is refused with 403 naming the cause, and never connected to.
        """
        origin = start_origin(self, interface=LOOPBACK6)
        proxy = await start_local_proxy(self, "--connect-port", str(origin.port))
        port = origin.port
        cases = (
            (b"[::1]", r"destination \[::1\]:\d+ is this host: ::1 is a loopback address \(--allow-local allows it\)"),
            (b"[0:0:0:0:0:0:0:1]", r"is this host: ::1 is a loopback address"),
            (b"[::ffff:127.0.0.1]", r"is this host: 127\.0\.0\.1 is a loopback address"),
            (b"[::]", r"is this host: :: is this host itself"),
            (b"[fe80::1]", r"is on this host&#x27;s link: fe80::1 is a link-local address"),
        )
        for host, cause in cases:
            authority = b"%s:%d" % (host, port)
            await self.assert_error(proxy, b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority),
                                    403, cause)
            await self.assert_error(proxy, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority),
                                    403, cause)
        self.assertEqual(origin.connections, 0)

    async def test_malformed_literals(self):
        """
        Malformed IPv6 literals in URLs and CONNECT targets, zones included, are 400s; the proxy goes on serving.
        """
        proxy, origin = await self.proxy_and_origin()
        for authority in (b"[::1", b"[zz::1]:80", b"[::1]x:80", b"[fe80::1%eth0]:80", b"[fe80::1%25eth0]:80",
                          b"[]:80", b"::1:80"):
            await self.assert_error(proxy, b"GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n" % (authority,), 400)
            await self.assert_error(proxy, b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % (authority,), 400)
        await self.assert_served(proxy, origin)

    async def test_connect_ipv6_literal(self):
        """
        C{CONNECT [::1]:port} tunnels to an echo server on ::1.
        """
        echo = listen_echo(self)
        proxy = await start_proxy(self, "--connect-port", str(echo.port))
        authority = b"[::1]:%d" % (echo.port,)
        since = proxy.mark()
        head, echoed = await deferToThread(connect_through, proxy.port, authority, b"ping over IPv6", SOCKET_TIMEOUT)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(echoed, b"ping over IPv6")
        await proxy.wait_for(rf"CONNECT \[::1\]:{echo.port} established", since)

    async def test_listen_tcp6(self):
        """
        A proxy listening on C{tcp6:...:interface=\\:\\:1} serves IPv6 clients (allowed by default: ::1 is
        loopback), and its access log writes them as C{::1}.
        """
        origin = start_origin(self, interface=LOOPBACK6)
        proxy = await start_daemon(self, "http", "--listen", LISTEN6, "--access-log", "-", "--allow-local",
                                   ready=PROXY_READY)
        since = proxy.mark()
        agent = ProxyAgent(TCP6ClientEndpoint(reactor, LOOPBACK6, proxy.port, timeout=WAIT_TIMEOUT), reactor)
        url = origin.url("/fixed?size=1000")
        response, received = await get(agent, url)
        self.assertEqual((response.code, received.body), (200, body_of(1000)))
        await proxy.wait_for(ipv6_access_line("GET", url, 200), since)
        # The proxy's own listener is not a way round the loop guard.
        data = await exchange(LOOPBACK6, proxy.port, b"GET http://[::1]:%d/ HTTP/1.1\r\nHost: x\r\n\r\n"
                              % (proxy.port,))
        [reply] = parse_replies(data)
        self.assertEqual(reply.status, 403, data)

    async def test_allow_rules_see_ipv6_clients(self):
        """
        With --allow naming IPv4 networks only, an IPv6 client is refused with 403 naming it.
        """
        proxy = await start_daemon(self, "http", "--listen", LISTEN6, "--allow", "127.0.0.0/8", "--access-log", "-",
                                   ready=PROXY_READY)
        data = await exchange(LOOPBACK6, proxy.port, b"GET http://example.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n")
        [reply] = parse_replies(data)
        self.assertEqual(reply.status, 403, data)
        self.assertIn(b"::1", reply.body)


class RelayIPv6Tests(HttpTestCase):
    """
    The relay, listening on ::1 and relaying to ::1.
    """

    skip = SKIP

    async def test_relay_to_ipv6(self):
        """
        A client over IPv6 asks for C{server_ip: "::1"} (in every spelling) and gets the ack server's reply.
        """
        relay, ack = await start_daemons(self, ("relay", "--listen", LISTEN6), ("ack", "--listen", LISTEN6))
        for host in ("::1", "[::1]", "0:0:0:0:0:0:0:1"):
            request = json.dumps({"server_ip": host, "server_port": ack.port, "message": "tgmr"}).encode()
            self.assertEqual(await exchange(LOOPBACK6, relay.port, request), b"DONE", host)
        await relay.wait_for(rf"forwarded 4 bytes from \[::1\]:\d+ to \[::1\]:{ack.port}")

    async def test_relay_rules_and_malformed(self):
        """
        An IPv6 rule blocks every spelling of its address; malformed literals and zones get the bad request reply.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN6)
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", f"[::1]:{ack.port}")
        for host in ("::1", "0:0:0:0:0:0:0:1", "::", "127.0.0.1"):
            request = json.dumps({"server_ip": host, "server_port": ack.port, "message": "tgmr"}).encode()
            self.assertEqual(await exchange(LOCALHOST, relay.port, request), b"Error, not allowed address", host)
        for host in ("[::1", "[zz::1]", "[::1]x", "fe80::1%eth0"):
            request = json.dumps({"server_ip": host, "server_port": ack.port, "message": "tgmr"}).encode()
            reply = await exchange(LOCALHOST, relay.port, request)
            self.assertTrue(reply.startswith(b"Error, bad request: server_ip must be an address"), reply)
