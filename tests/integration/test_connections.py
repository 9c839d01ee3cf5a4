"""
End-to-end tests of L{netproxy.connections} with real C{twistd}: the
per-client connection limit, and clients on Unix sockets (admitted by
default, logged and counted as the one client C{unix}).
"""

import os
import re

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LISTEN,
    LOCALHOST,
    WAIT_TIMEOUT,
    bounded,
    connect_endpoint,
    fresh_directory,
    relay_request,
    start_daemon,
    start_server,
)
from tests.integration.http_client import PROXY_READY, parse_replies
from tests.integration.http_origin import body_of, start_origin
from tests.integration.test_systemd import notify_socket


def connect_from(testcase, source, port, first=b""):
    """
    Connect a L{StreamClient} from loopback address C{source} to
    C{127.0.0.1:port}; it is disconnected at the test's cleanup.

    :returns: a coroutine returning the connected client.
    """
    endpoint = TCP4ClientEndpoint(reactor, LOCALHOST, port, timeout=WAIT_TIMEOUT, bindAddress=(source, 0))
    return connect_endpoint(testcase, endpoint, first)


def connect_unix(testcase, path, first=b""):
    """
    Connect a L{StreamClient} to the Unix socket at C{path}.

    :returns: a coroutine returning the connected client.
    """
    return connect_endpoint(testcase, UNIXClientEndpoint(reactor, path, timeout=WAIT_TIMEOUT), first)


async def start_on_unix(testcase, role, *args):
    """
    Start C{role} listening on a Unix socket in a fresh directory, and wait
    until it listens: twistd logs "starting on" before the socket is bound,
    the role's READY=1 to C{$NOTIFY_SOCKET} comes once it listens.

    :returns: the L{tests.integration.daemon.Daemon} and the socket's path.
    """
    path = os.path.join(fresh_directory(testcase), f"{role}.sock")
    receiver = notify_socket(testcase)
    daemon = await start_daemon(testcase, role, "--listen", f"unix:{path}", *args, ready=(),
                                env={"NOTIFY_SOCKET": receiver.address})
    await receiver.wait_for("READY")
    return daemon, path


class PerClientLimitTests(TestCase):
    """
    --max-connections-per-client: one address cannot take every connection.
    """

    timeout = 60

    async def test_ack(self):
        """The ack server refuses the 41st connection from 127.0.0.1 while 127.0.0.2 still gets in."""
        ack = await start_daemon(self, "ack", "--listen", LISTEN, "--max-connections", "100",
                                 "--max-connections-per-client", "40")
        for _ in range(40):
            client = await connect_from(self, "127.0.0.1", ack.port, b"x")
            self.assertEqual(await client.wait_for_bytes(4), b"DONE")
        refused = await connect_from(self, "127.0.0.1", ack.port, b"x")
        await bounded(refused.lost)
        self.assertEqual(refused.received, b"")
        await ack.wait_for(r"refusing connection from 127\.0\.0\.1:\d+: 40 connections already open from 127\.0\.0\.1")
        other = await connect_from(self, "127.0.0.2", ack.port, b"x")
        self.assertEqual(await other.wait_for_bytes(4), b"DONE")

    async def test_http_default_quarter(self):
        """The HTTP proxy's default lets one address hold a quarter of --max-connections: the 11th of 40 is refused."""
        proxy = await start_daemon(self, "http", "--listen", LISTEN, "--no-cache", "--max-connections", "40",
                                   ready=PROXY_READY)
        for _ in range(10):
            await connect_from(self, "127.0.0.1", proxy.port)
        refused = await connect_from(self, "127.0.0.1", proxy.port)
        await bounded(refused.lost)
        await proxy.wait_for(r"refusing connection from 127\.0\.0\.1:\d+: 10 connections already open")
        other = await connect_from(self, "127.0.0.2", proxy.port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        await other.wait_for_bytes(12)
        self.assertTrue(other.received.startswith(b"HTTP/1.1 200 "), other.received)


class UnixSocketTests(TestCase):
    """
    Roles listening on a Unix socket serve its clients: they are local.
    """

    timeout = 60

    async def test_http(self):
        """The HTTP proxy on a Unix socket serves a request and /metrics, and logs the client as unix."""
        origin = start_origin(self)
        proxy, path = await start_on_unix(self, "http", "--no-cache", "--allow-local", "--access-log", "-")
        url = origin.url("/fixed?size=100")
        client = await connect_unix(self, path, f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await bounded(client.lost)
        [reply] = parse_replies(client.received)
        self.assertEqual((reply.status, reply.body), (200, body_of(100)), proxy.output.transcript())
        await proxy.wait_for(rf'^unix - - \[[^]]+\] "GET {re.escape(url)} HTTP/1\.1" 200 100 ')
        admin = await connect_unix(self, path, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await bounded(admin.lost)
        [page] = parse_replies(admin.received)
        self.assertEqual(page.status, 200)
        self.assertIn(b"netproxy_", page.body)

    async def test_relay(self):
        """The relay on a Unix socket relays a request and logs its client."""
        server = start_server(self, reply=lambda data: b"DONE")
        relay, path = await start_on_unix(self, "relay")
        client = await connect_unix(self, path, relay_request(server.port))
        self.assertEqual(await client.wait_for_bytes(4), b"DONE")
        await relay.wait_for(rf"received request from unix socket for 127\.0\.0\.1:{server.port}")

    async def test_unix_clients_are_one_client(self):
        """Every peer of a Unix socket counts as the one client unix against the per-client limit."""
        ack, path = await start_on_unix(self, "ack", "--max-connections-per-client", "2")
        for _ in range(2):
            client = await connect_unix(self, path, b"x")
            self.assertEqual(await client.wait_for_bytes(4), b"DONE")
        refused = await connect_unix(self, path, b"x")
        await bounded(refused.lost)
        self.assertEqual(refused.received, b"")
        await ack.wait_for(r"refusing connection from unix socket: 2 connections already open from unix")
