"""
End-to-end tests of a fleet of HTTP caches behind a real HAProxy,
configured from C{contrib/haproxy/netproxy-fleet.cfg}: three real
C{twistd netproxy http} nodes on C{haproxy:} listeners, HAProxy choosing
the node by a consistent hash of the whole URL and passing the client's
address with the PROXY protocol v2.

The nodes allow only 127.0.0.2 (C{--allow 127.0.0.2}) while HAProxy
connects to them from 127.0.0.1: a node serves a request only when it
judges the client by the address HAProxy passed.  The test's client
connects to HAProxy from 127.0.0.2; which node answered each request is in
the C{X-Netproxy-Node} header the shipped configuration adds.
"""

import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.web.client import HTTPConnectionPool, ProxyAgent

from tests.integration.daemon import (
    LOCALHOST,
    SOCKET_TIMEOUT,
    WAIT_TIMEOUT,
    raw_exchange,
    start_daemon,
)
from tests.integration.haproxy import start_haproxy
from tests.integration.http_client import HttpTestCase, cache_status, connect_through, fetch
from tests.integration.http_origin import BODY, MAX_AGE_60, Page, add_page, start_origin

# Where the test's client connects from: the one address the nodes allow.
CLIENT = "127.0.0.2"
URLS = 300
# Requests in flight at once through HAProxy.
PARALLEL = 20
# twistd names the listener after the factory, marked as behind a proxy.
NODE_READY = ("ProxyFactory (PROXY)",)


class _Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)



class FleetTests(HttpTestCase):
    """
    HAProxy spreads URLs over the nodes by a consistent hash, and the nodes
    see the clients HAProxy serves.
    """

    timeout = 120

    async def start_fleet(self, *args):
        """
        Start an origin, three nodes with C{args}, and HAProxy in front of them.

        :returns: C{(haproxy, nodes, origin)}.
        """
        origin = start_origin(self)
        node = ("http", "--listen", "haproxy:tcp:0:interface=127.0.0.1", "--access-log", "-", "--allow-local",
                "--allow", CLIENT, *args)
        starting = [Deferred.fromCoroutine(start_daemon(self, *node, ready=NODE_READY)) for _ in range(3)]
        nodes = await gatherResults(starting, consumeErrors=True)
        haproxy = start_haproxy(self, [daemon.port for daemon in nodes])
        return haproxy, nodes, origin

    def agent(self, haproxy):
        """
        :returns: a L{ProxyAgent} using HAProxy as its proxy, from L{CLIENT},
            keeping its connections open across requests.
        """
        pool = HTTPConnectionPool(reactor)
        pool.maxPersistentPerHost = PARALLEL
        self.addCleanup(pool.closeCachedConnections)
        endpoint = TCP4ClientEndpoint(reactor, LOCALHOST, haproxy.port, timeout=WAIT_TIMEOUT,
                                      bindAddress=(CLIENT, 0))
        return ProxyAgent(endpoint, reactor, pool)

    async def fetch_all(self, agent, urls):
        """
        GET every URL through HAProxy, C{PARALLEL} at a time.

        :returns: C{{url: (node, hit)}}: which node answered, and whether
            from its cache.
        """
        served = {}

        async def get(url):
            response, received = await fetch(agent, b"GET", url)
            self.assertEqual((response.code, received.body), (200, BODY), url)
            [node] = response.headers.getRawHeaders(b"x-netproxy-node")
            served[url] = (node.decode("ascii"), (cache_status(response) or [""])[0] == "hit")

        for start in range(0, len(urls), PARALLEL):
            await gatherResults([Deferred.fromCoroutine(get(url)) for url in urls[start:start + PARALLEL]], consumeErrors=True)
        return served

    async def test_consistent_hashing(self):
        """
        300 URLs fetched twice land on one node each and are hits the second time; a node killed moves its share only.
        """
        haproxy, nodes, origin = await self.start_fleet()
        base = add_page(origin, "fleet", Page(MAX_AGE_60))
        urls = [f"{base}?n={index}" for index in range(URLS)]
        agent = self.agent(haproxy)
        first = await self.fetch_all(agent, urls)
        second = await self.fetch_all(agent, urls)
        self.assertEqual({url: node for url, (node, _) in second.items()},
                         {url: node for url, (node, _) in first.items()}, "a URL changed node")
        hits = sum(hit for _, hit in second.values())
        self.assertGreaterEqual(hits, URLS * 99 // 100)
        shares = {name: sum(node == name for node, _ in first.values()) for name in ("node1", "node2", "node3")}
        # Each node holds a share of the ring: none is left out or takes all.
        self.assertTrue(all(URLS // 10 <= share <= URLS * 6 // 10 for share in shares.values()), shares)
        # The nodes logged the client HAProxy served, not HAProxy.
        await nodes[0].wait_for(rf'^{re.escape(CLIENT)} - - \[[^]]+\] "GET {re.escape(base)}\?n=\d+ HTTP/1\.1" 200 ')

        since = haproxy.output.mark()
        nodes[1].kill()
        await haproxy.wait_for(r"Server caches/node2 is DOWN", since)
        third = await self.fetch_all(agent, urls)
        moved = {url for url in urls if third[url][0] != first[url][0]}
        self.assertEqual(moved, {url for url in urls if first[url][0] == "node2"})
        self.assertTrue(URLS // 10 <= len(moved) <= URLS * 6 // 10, len(moved))
        stayed = [third[url][1] for url in urls if url not in moved]
        self.assertGreaterEqual(sum(stayed), len(stayed) * 99 // 100)

    async def test_client_address(self):
        """
        Behind HAProxy, --allow judges the client's own address; a direct connection without a PROXY header is dropped.
        """
        haproxy, nodes, origin = await self.start_fleet()
        url = add_page(origin, "fleet", Page(MAX_AGE_60)) + "?allowed"
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
            url.encode(), url.split("/")[2].encode())
        allowed = await raw_exchange(haproxy.port, request, until_closed=True, source=CLIENT)
        self.assertTrue(allowed.data.startswith(b"HTTP/1.1 200 "), allowed)
        refused = await raw_exchange(haproxy.port, request, until_closed=True)
        self.assertTrue(refused.data.startswith(b"HTTP/1.1 403 "), refused)
        self.assertIn(b"client 127.0.0.1 is not allowed", refused.data)
        # A client's own PROXY header is a malformed request to HAProxy's
        # frontend (400): it cannot claim the allowed address.
        forged = b"PROXY TCP4 %s 127.0.0.1 1 2\r\n" % CLIENT.encode()
        spoofed = await raw_exchange(haproxy.port, forged + request, until_closed=True)
        self.assertTrue(spoofed.data.startswith(b"HTTP/1.1 400 "), spoofed)

        # Straight to a node, from the allowed address but without a header:
        # dropped before the proxy reads a byte, and the origin never asked.
        seen = len(origin.requests)
        direct = nodes[0]
        since = direct.mark()
        dropped = await raw_exchange(direct.port, request, until_closed=True, source=CLIENT)
        self.assertEqual((dropped.data, dropped.closed), (b"", True))
        await direct.wait_for(rf"dropping connection from {re.escape(CLIENT)}:\d+ to a haproxy: listener: "
                              r"no PROXY protocol header", since)
        self.assertEqual(len(origin.requests), seen)

    async def test_connect(self):
        """
        A CONNECT tunnel through HAProxy reaches a node and carries bytes both ways.
        """
        factory = Factory.forProtocol(_Echo)
        echo = reactor.listenTCP(0, factory, interface=LOCALHOST)
        self.addCleanup(echo.stopListening)
        port = echo.getHost().port
        haproxy, nodes, origin = await self.start_fleet("--connect-port", str(port))
        authority = f"{LOCALHOST}:{port}".encode()
        head, echoed = await deferToThread(connect_through, haproxy.port, authority, b"ping through", SOCKET_TIMEOUT, CLIENT)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(echoed, b"ping through")

