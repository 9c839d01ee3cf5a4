"""
End-to-end tests of the HTTP forward proxy: a real C{twistd netproxy http}
in front of an in-process origin (L{tests.integration.http_origin}), driven
by treq over Twisted's L{ProxyAgent} (L{tests.integration.http_client}), by
naive blocking sockets (malformed input, HTTP/1.0, pipelining, chunked
uploads, CONNECT with TLS inside) and by curl.
"""

import hashlib
import json
import re
import shutil
import signal
import socket
import ssl

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.web.client import FileBodyProducer, HTTPConnectionPool, ProxyAgent

from tests.integration.daemon import (
    LOCALHOST,
    SOCKET_TIMEOUT,
    WAIT_TIMEOUT,
    bounded,
    closed_port,
    fresh_directory,
    raw_exchange,
    refused_after_close,
    run_command,
)
from tests.integration.http_client import (
    Body,
    HttpTestCase,
    access_line,
    fetch,
    parse_replies,
    proxy_agent,
    proxy_endpoint,
    send,
    start_local_proxy,
    start_proxy,
)
from tests.integration.http_origin import BLOCK, SelfSignedTLS, body_of, pattern, pattern_digest, start_origin

# What the proxy adds to a message forwarded from an HTTP/1.1 peer.
VIA = re.compile(r"^1\.1 \S+$")
# RFC 9110 section 7.6.1, plus the pre-standard Proxy-Connection and the
# client's credentials for the proxy.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade"}


def _exchange_from(source, port, request, timeout):
    # Like the harness's raw_exchange(until_closed=True), from another
    # loopback address.
    data = b""
    closed = False
    with socket.create_connection((LOCALHOST, port), timeout=timeout, source_address=(source, 0)) as sock:
        try:
            sock.sendall(request)
        except OSError:
            # Refused already: read what it answered.
            pass
        while len(data) < 1 << 20:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    return data, closed


def _tls_through_tunnel(port, authority, request, timeout):
    # CONNECT, then TLS with the destination inside the tunnel: the proxy
    # sees only ciphertext.
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                return head, None, None
            head += chunk
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # A self-signed certificate: pinned below instead of verified.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            peer = tls.getpeercert(binary_form=True)
            tls.sendall(request)
            answer = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                answer += chunk
        return head, peer, answer


def _expect_continue(port, head, body, timeout):
    # A client that sends "Expect: 100-continue" and holds its body back
    # until the interim response comes, as RFC 9110 section 10.1.1 allows.
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(head)
        interim = b""
        try:
            while b"\r\n\r\n" not in interim:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                interim += chunk
        except TimeoutError:
            pass
        interim, _, final = interim.partition(b"\r\n\r\n")
        if not interim.startswith(b"HTTP/1.1 100 "):
            return interim, final
        sock.sendall(body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return interim, final
            final += chunk


class _PatternFile:
    """
    A file whose content is the origin's test pattern, made as it is read.
    """

    def __init__(self, size):
        self._blocks = pattern(size)

    def read(self, size):
        # FileBodyProducer asks for BLOCK bytes: one block a read.
        return next(self._blocks, b"")

    def close(self):
        pass


class _CountingEndpoint:
    """
    A client endpoint counting the connections made through it.
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.connections = 0

    def connect(self, factory):
        self.connections += 1
        return self.endpoint.connect(factory)


class ForwardingTests(HttpTestCase):
    """
    Requests reach the origin as they should, and responses come back whole.
    """

    async def test_methods(self):
        """
        GET, HEAD, POST, PUT, DELETE, OPTIONS and PATCH reach the origin with their method and body.
        """
        proxy, origin = await self.proxy_and_origin()
        agent = proxy_agent(proxy.port)
        cases = [
            (b"GET", None), (b"HEAD", None), (b"POST", b"posted \x00\xff data"), (b"PUT", b"put" * 10000),
            (b"DELETE", b""), (b"OPTIONS", None), (b"PATCH", b'{"op": "replace"}'),
        ]
        for number, (method, sent) in enumerate(cases):
            url = origin.url(f"/echo?n={number}")
            since = proxy.mark()
            response, received = await fetch(agent, method, url, sent)
            self.assertEqual((response.code, received.complete), (200, True), (method, received.reason))
            body = received.body
            seen = origin.requests[-1]
            self.assertEqual((seen.method, seen.uri, seen.body), (method.decode(), f"/echo?n={number}", sent or b""))
            self.assertEqual(seen.header("host"), [f"127.0.0.1:{origin.port}"])
            self.assertEqual(len(seen.header("via")), 1, seen.headers)
            self.assertRegex(seen.header("via")[0], VIA)
            if method == b"HEAD":
                self.assertEqual(body, b"")
            else:
                self.assertEqual(json.loads(body)["body"].encode("latin-1"), sent or b"")
            await proxy.wait_for(access_line(method.decode(), url, 200), since)
        self.assertEqual(len(origin.requests), len(cases))

    async def test_hop_by_hop_and_via(self):
        """
        Hop-by-hop fields (and those named in Connection) are removed both ways, Via is added, the URL's Host wins.
        """
        proxy, origin = await self.proxy_and_origin()
        request = (
            b"GET %s HTTP/1.1\r\n"
            b"Host: wrong.example\r\n"
            b"Connection: close, X-Client-Hop\r\n"
            b"X-Client-Hop: for the proxy only\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
            b"TE: trailers\r\n"
            b"Trailer: X-Checksum\r\n"
            b"Upgrade: h2c\r\n"
            b"X-End-To-End: kept\r\n"
            b"\r\n"
        ) % origin.url("/echo?hop").encode()
        raw = await raw_exchange(proxy.port, request, until_closed=True)
        [reply] = parse_replies(raw.data)
        self.assertEqual(reply.status, 200, raw)
        [seen] = origin.requests
        names = {name for name, _ in seen.headers}
        self.assertEqual(names & (HOP_BY_HOP | {"x-client-hop"}), set(), seen.headers)
        self.assertEqual(seen.header("x-end-to-end"), ["kept"])
        self.assertEqual(seen.header("host"), [f"127.0.0.1:{origin.port}"])
        self.assertEqual(len(seen.header("via")), 1, seen.headers)
        self.assertRegex(seen.header("via")[0], VIA)
        # The origin's answer named X-Origin-Hop in Connection and sent Keep-Alive.
        self.assertEqual(reply.header("x-origin-hop"), [], reply.headers)
        self.assertEqual(reply.header("keep-alive"), [], reply.headers)
        self.assertNotIn("x-origin-hop", reply.tokens("connection"))
        self.assertTrue(reply.header("via") and VIA.match(reply.header("via")[-1]), reply.headers)
        self.assertTrue(raw.closed, "the proxy ignored the client's Connection: close")

    async def test_chunked_upload(self):
        """
        A chunked request body (extensions, a trailer, binary data, a chunk bigger than a read) arrives intact.
        """
        proxy, origin = await self.proxy_and_origin()
        pieces = [b"hello ", bytes(range(256)) * 400, b"\r\n0\r\n\r\n", b"x"]
        chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        request = (
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"%s0\r\nX-Checksum: 1\r\n\r\n"
        ) % (origin.url("/echo?chunked").encode(), chunked)
        raw = await raw_exchange(proxy.port, request, until_closed=True)
        [reply] = parse_replies(raw.data)
        self.assertEqual(reply.status, 200, raw.data[:300])
        [seen] = origin.requests
        self.assertEqual((seen.method, seen.uri), ("POST", "/echo?chunked"))
        self.assertEqual(seen.body, b"".join(pieces))

    async def test_large_download(self):
        """
        A 200 MiB streamed (chunked) body arrives intact, by SHA-256, read and hashed as it arrives.
        """
        size = 200 * 1024 * 1024
        proxy, origin = await self.proxy_and_origin()
        # Hashed in a thread (hashlib releases the GIL) while the download runs.
        expected = deferToThread(pattern_digest, size)
        url = origin.url(f"/stream?size={size}")
        response = await send(proxy_agent(proxy.port), b"GET", url)
        self.assertEqual(response.code, 200)
        received = Body(keep=False)
        response.deliverBody(received)
        await bounded(received.done, 40)
        self.assertEqual((received.size, received.complete), (size, True), received.reason)
        self.assertEqual(received.digest.hexdigest(), await bounded(expected, 40))
        await proxy.wait_for(access_line("GET", url, 200, size))

    async def test_large_upload(self):
        """
        A 64 MiB chunked upload is streamed to the origin intact, by SHA-256.
        """
        size = 64 * 1024 * 1024
        proxy, origin = await self.proxy_and_origin()
        expected = deferToThread(pattern_digest, size)
        # No length known in advance: the agent sends it chunked.
        producer = FileBodyProducer(_PatternFile(size), readSize=BLOCK)
        response = await send(proxy_agent(proxy.port), b"PUT", origin.url("/digest"), producer, timeout=40)
        received = Body()
        response.deliverBody(received)
        await bounded(received.done)
        self.assertEqual(response.code, 200, received.body)
        self.assertEqual(json.loads(received.body), {"size": size, "sha256": await bounded(expected, 40)})

    async def test_expect_continue(self):
        """
        The origin's 100 Continue reaches a client that waits for it before sending its body (RFC 9110 15.2).
        """
        proxy, origin = await self.proxy_and_origin("--timeout", "2")
        head = (b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nExpect: 100-continue\r\n"
                b"Connection: close\r\n\r\n") % origin.url("/echo?expect").encode()
        interim, final = await deferToThread(_expect_continue, proxy.port, head, b"continued", SOCKET_TIMEOUT)
        self.assertTrue(interim.startswith(b"HTTP/1.1 100 "),
                        f"the client waiting for 100 Continue got {interim + final!r}\n{proxy.output.transcript()}")
        [reply] = parse_replies(final)
        self.assertEqual(reply.status, 200)
        self.assertEqual(json.loads(reply.body)["body"], "continued")
        await self.assert_served(proxy, origin)

    async def test_http10_client(self):
        """
        An HTTP/1.0 client gets a response unchunked and delimited by close, whether the origin sent a length or chunks.
        """
        proxy, origin = await self.proxy_and_origin()
        for path in ("/fixed?size=70000", "/stream?size=300000"):
            size = int(path.rpartition("=")[2])
            raw = await raw_exchange(proxy.port, b"GET %s HTTP/1.0\r\n\r\n" % origin.url(path).encode(),
                                     until_closed=True)
            self.assertTrue(raw.closed, f"{path}: an HTTP/1.0 connection was left open")
            [reply] = parse_replies(raw.data)
            self.assertEqual(reply.status, 200, path)
            self.assertIn(reply.version, ("HTTP/1.0", "HTTP/1.1"))
            self.assertEqual(reply.header("transfer-encoding"), [], f"{path}: chunked sent to HTTP/1.0")
            self.assertEqual(reply.body, body_of(size), path)
        await self.assert_served(proxy, origin)

    async def test_pipelining(self):
        """
        Three requests sent at once on one connection are answered in order, then the connection closes as asked.
        """
        proxy, origin = await self.proxy_and_origin()
        requests = (
            b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthird"
        ) % (origin.url("/echo?first").encode(), origin.url("/fixed?size=30000").encode(),
             origin.url("/echo?third").encode())
        raw = await raw_exchange(proxy.port, requests, until_closed=True)
        self.assertTrue(raw.closed)
        first, second, third = parse_replies(raw.data)
        self.assertEqual([first.status, second.status, third.status], [200, 200, 200])
        self.assertEqual(json.loads(first.body)["uri"], "/echo?first")
        self.assertEqual(second.body, body_of(30000))
        self.assertEqual((json.loads(third.body)["uri"], json.loads(third.body)["body"]), ("/echo?third", "third"))
        self.assertEqual([(seen.method, seen.uri) for seen in origin.requests],
                         [("GET", "/echo?first"), ("POST", "/echo?third")])

    async def test_upstream_reuse_one_client(self):
        """
        Five sequential requests on one persistent client connection use fewer upstream connections than requests.
        """
        proxy, origin = await self.proxy_and_origin()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 1
        self.addCleanup(pool.closeCachedConnections)
        endpoint = _CountingEndpoint(proxy_endpoint(proxy.port))
        agent = ProxyAgent(endpoint, reactor, pool)
        since = proxy.mark()
        for number in range(5):
            url = origin.url(f"/fixed?size={1000 + number}")
            response, received = await fetch(agent, b"GET", url)
            self.assertEqual((response.code, received.body), (200, body_of(1000 + number)))
            await proxy.wait_for(access_line("GET", url, 200), since)
        self.assertEqual(endpoint.connections, 1, "the proxy did not keep the client's connection open")
        self.assertLess(origin.connections, 5, "no upstream connection was reused")

    async def test_upstream_reuse_across_clients(self):
        """
        Five clients one after another, each closing its connection, share pooled upstream connections.
        """
        proxy, origin = await self.proxy_and_origin()
        for number in range(5):
            raw = await raw_exchange(
                proxy.port, b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                % origin.url(f"/echo?client={number}").encode(), until_closed=True)
            [reply] = parse_replies(raw.data)
            self.assertEqual(reply.status, 200)
        self.assertEqual([seen.uri for seen in origin.requests], [f"/echo?client={number}" for number in range(5)])
        self.assertLess(len({seen.client_port for seen in origin.requests}), 5, "no upstream connection was reused")
        self.assertLess(origin.connections, 5)

    async def test_curl(self):
        """
        curl through the proxy (-x) downloads a body intact and posts one (without curl: treq does the same).
        """
        proxy, origin = await self.proxy_and_origin()
        directory = FilePath(fresh_directory(self))
        download = origin.url("/fixed?size=1000000")
        upload = b"curl \x00 upload\n" * 5000
        since = proxy.mark()
        curl = shutil.which("curl")
        if curl is not None:
            common = [curl, "--silent", "--show-error", "--noproxy", "", "--proxy", f"http://{LOCALHOST}:{proxy.port}",
                      "--max-time", str(WAIT_TIMEOUT)]
            result = await run_command([*common, "--output", directory.child("body").path,
                                        "--write-out", "%{http_code}", download])
            self.assertEqual((result.code, result.out), (0, "200"), result)
            received = directory.child("body").getContent()
            directory.child("upload").setContent(upload)
            result = await run_command([*common, "--data-binary", "@" + directory.child("upload").path,
                                        origin.url("/echo?curl")])
            self.assertEqual(result.code, 0, result)
            echoed = json.loads(result.out)
        else:
            agent = proxy_agent(proxy.port)
            response, received = await fetch(agent, b"GET", download)
            self.assertEqual(response.code, 200)
            received = received.body
            response, echoed = await fetch(agent, b"POST", origin.url("/echo?curl"), upload)
            echoed = json.loads(echoed.body)
        self.assertEqual(hashlib.sha256(received).hexdigest(), pattern_digest(1000000))
        self.assertEqual((echoed["method"], echoed["uri"], echoed["body"].encode("latin-1")),
                         ("POST", "/echo?curl", upload))
        await proxy.wait_for(access_line("GET", download, 200), since)
        await proxy.wait_for(access_line("POST", origin.url("/echo?curl"), 200), since)


class TunnelTests(HttpTestCase):
    """
    CONNECT opens a raw tunnel to the allowed ports only.
    """

    async def test_connect_tls(self):
        """
        CONNECT to a TLS server's port gets 200 Connection established, then TLS and HTTP inside reach that server.
        """
        tls = SelfSignedTLS()
        secure = start_origin(self, tls=tls)
        proxy = await start_proxy(self, "--connect-port", str(secure.port))
        authority = f"127.0.0.1:{secure.port}".encode()
        request = (b"POST /echo?tunnelled HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
                   b"secret")
        head, peer, answer = await deferToThread(_tls_through_tunnel, proxy.port, authority, request, SOCKET_TIMEOUT)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 Connection established\r\n"), head)
        self.assertEqual(peer, tls.certificate, "the TLS peer is not the destination server")
        [reply] = parse_replies(answer)
        self.assertEqual(reply.status, 200)
        self.assertEqual(json.loads(reply.body)["body"], "secret")
        [seen] = secure.requests
        self.assertEqual((seen.method, seen.uri, seen.body), ("POST", "/echo?tunnelled", b"secret"))
        # Nothing of the request was readable to the proxy, so it added no Via.
        self.assertEqual(seen.header("via"), [])
        # The tunnel's access line is written when it closes, with the bytes it carried back.
        await proxy.wait_for(access_line("CONNECT", authority.decode(), 200, r"[1-9]\d*"))

    async def test_connect_port_not_allowed(self):
        """
        CONNECT to a port not in --connect-port is refused with 403 and never dialled.
        """
        proxy, origin = await self.proxy_and_origin("--connect-port", str(closed_port()))
        authority = f"127.0.0.1:{origin.port}".encode()
        await self.assert_error(proxy, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority), 403,
                                str(origin.port))
        self.assertEqual(origin.connections, 0)
        await self.assert_served(proxy, origin)


class LocalDestinationTests(HttpTestCase):
    """
    Destinations on this host are refused by default, however they are spelled; --allow-local lets them
    through, and a loopback rule still matches every spelling of this host.
    """

    # Spellings of this host that Linux connects to the loopback-only origin.
    SPELLINGS = (b"0.0.0.0", b"0", b"0x0", b"[::ffff:0.0.0.0]", b"127.1", b"localhost", b"127.0.0.1.")

    async def refused_everywhere(self, proxy, origin, cause):
        """
        Every spelling of this host, as a GET and as a CONNECT, gets 403 matching C{cause}, and the origin
        sees no connection.
        """
        for host in self.SPELLINGS:
            request = b"GET http://%s:%d/echo HTTP/1.1\r\nHost: a\r\n\r\n" % (host, origin.port)
            await self.assert_error(proxy, request, 403, cause)
        await self.assert_error(proxy, b"GET http://[::]:%d/ HTTP/1.1\r\n\r\n" % origin.port, 403, cause)
        for host in (b"0.0.0.0", b"0x0", b"localhost"):
            await self.assert_error(proxy, b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (host, origin.port), 403, cause)
        self.assertEqual(origin.connections, 0)

    async def test_refused_by_default(self):
        """
        Without --allow-local, GET http://0.0.0.0:PORT/ and CONNECT 0.0.0.0:PORT to a loopback origin get 403.
        """
        origin = start_origin(self)
        proxy = await start_local_proxy(self, "--connect-port", str(origin.port))
        await self.refused_everywhere(proxy, origin, r"is this host: .*\(--allow-local allows it\)")
        await self.assert_error(proxy, b"GET %s HTTP/1.1\r\n\r\n" % origin.url("/echo").encode(), 403,
                                r"127\.0\.0\.1 is a loopback address")
        self.assertEqual(origin.connections, 0)

    async def test_loopback_rule_with_allow_local(self):
        """
        With --allow-local, --block 127.0.0.0/8 still refuses 0.0.0.0 and the other spellings of this host.
        """
        origin = start_origin(self)
        proxy = await start_proxy(self, "--block", "127.0.0.0/8", "--connect-port", str(origin.port))
        await self.refused_everywhere(proxy, origin, r"blocked.*127\.0\.0\.0/8")

    async def test_allow_local(self):
        """
        --allow-local alone lets GET http://0.0.0.0:PORT/ and CONNECT 0.0.0.0:PORT reach the loopback origin.
        """
        origin = start_origin(self)
        proxy = await start_proxy(self, "--connect-port", str(origin.port))
        reply = await raw_exchange(proxy.port, b"GET http://0.0.0.0:%d/fixed?size=10 HTTP/1.1\r\nHost: a\r\n"
                                               b"Connection: close\r\n\r\n" % origin.port, until_closed=True)
        [answer] = parse_replies(reply.data)
        self.assertEqual((answer.status, answer.body), (200, body_of(10)))
        reply = await raw_exchange(proxy.port, b"CONNECT 0.0.0.0:%d HTTP/1.1\r\n\r\n"
                                               b"GET /fixed?size=10 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                                               % origin.port, until_closed=True)
        self.assertTrue(reply.data.startswith(b"HTTP/1.1 200 Connection established\r\n"), reply.data)
        self.assertIn(b"\r\n\r\n" + body_of(10), reply.data)
        self.assertEqual(origin.connections, 2)


class ErrorTests(HttpTestCase):
    """
    What the proxy refuses or cannot do gets a short error page, and the
    proxy keeps serving.
    """

    async def test_client_not_allowed(self):
        """
        A client outside --allow gets 403 and its request never reaches the origin.
        """
        proxy, origin = await self.proxy_and_origin("--allow", "127.0.0.1/32")
        request = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % origin.url("/echo?outsider").encode()
        data, closed = await deferToThread(_exchange_from, "127.0.0.2", proxy.port, request, SOCKET_TIMEOUT)
        self.check_error(data, closed, 403, r"127\.0\.0\.2|not allowed", request)
        self.assertEqual(origin.connections, 0)
        await self.assert_served(proxy, origin)

    async def test_blocked_destination(self):
        """
        A destination matching --block, however its address is spelled, gets 403 naming it and is never contacted.
        """
        blocked = start_origin(self)
        proxy, origin = await self.proxy_and_origin("--block", f"127.0.0.1:{blocked.port}",
                                                    "--connect-port", str(blocked.port))
        for host in (b"127.0.0.1", b"127.1", b"2130706433", b"[::ffff:127.0.0.1]"):
            request = b"GET http://%s:%d/echo HTTP/1.1\r\nHost: a\r\n\r\n" % (host, blocked.port)
            await self.assert_error(proxy, request, 403, str(blocked.port))
        await self.assert_error(proxy, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % blocked.port, 403,
                                str(blocked.port))
        self.assertEqual(blocked.connections, 0)
        # Other ports of the same address are not blocked.
        await self.assert_served(proxy, origin)

    async def test_blocked_destination_by_name(self):
        """
        A host name that resolves to a blocked address is blocked too (as in the relay: match, resolve, match again).
        """
        blocked = start_origin(self)
        proxy, origin = await self.proxy_and_origin("--block", f"127.0.0.1:{blocked.port}")
        request = b"GET http://localhost:%d/echo?by-name HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % (
            blocked.port,)
        await self.assert_error(proxy, request, 403)
        self.assertEqual(blocked.connections, 0)
        await self.assert_served(proxy, origin)

    async def test_blocked_tunnel_by_name(self):
        """
        CONNECT to a host name that resolves to a blocked address and port is refused with 403.
        """
        blocked = start_origin(self)
        proxy, origin = await self.proxy_and_origin("--block", f"127.0.0.1:{blocked.port}",
                                                    "--connect-port", str(blocked.port))
        # A tunnel wrongly opened stays open: the short timeout ends the read.
        reply = await raw_exchange(proxy.port, b"CONNECT localhost:%d HTTP/1.1\r\n\r\n" % blocked.port,
                                   until_closed=True, timeout=3)
        self.check_error(reply.data, reply.closed, 403, None, b"CONNECT localhost")
        self.assertEqual(blocked.connections, 0)
        await self.assert_served(proxy, origin)

    async def test_connection_refused(self):
        """
        An origin port that refuses connections gets 502 naming the destination.
        """
        proxy, origin = await self.proxy_and_origin()
        port = closed_port()
        since = proxy.mark()
        await self.assert_error(proxy, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: a\r\n\r\n" % port, 502, str(port))
        await proxy.wait_for(access_line("GET", f"http://127.0.0.1:{port}/", 502), since)
        await self.assert_served(proxy, origin)

    async def test_origin_timeout(self):
        """
        An origin that never answers gets 504 after --timeout, and the proxy drops its upstream connection.
        """
        proxy, origin = await self.proxy_and_origin("--timeout", "1")
        held = origin.next_held()
        await self.assert_error(proxy, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % origin.url("/hang").encode(), 504,
                                str(origin.port))
        _, finished = await held
        await bounded(finished)
        await self.assert_served(proxy, origin)

    async def test_slow_client(self):
        """
        A client that sends half a request head and stops gets 408 and is disconnected.
        """
        proxy, origin = await self.proxy_and_origin("--timeout", "1", "--idle-timeout", "1")
        await self.assert_error(proxy, b"GET http://x/ HTTP/1.1\r\nHost", 408)
        await self.assert_served(proxy, origin)

    async def test_slow_client_request_timeout(self):
        """
        --timeout alone bounds how long a client may take to send its request head (408), as its help says.
        """
        proxy, origin = await self.proxy_and_origin("--timeout", "1")
        await self.assert_error(proxy, b"GET http://x/ HTTP/1.1\r\nHost", 408)
        await self.assert_served(proxy, origin)

    async def test_slow_upload(self):
        """
        A client that stops in the middle of its request body gets 408, and the origin's connection is closed.
        """
        proxy, origin = await self.proxy_and_origin("--timeout", "1")
        await self.assert_error(proxy, b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf"
                                % origin.url("/echo").encode(), 408)
        await self.assert_served(proxy, origin)

    async def test_origin_form(self):
        """
        A request in origin-form (not for one of the proxy's own pages) gets 400.
        """
        proxy, origin = await self.proxy_and_origin()
        await self.assert_error(proxy, b"GET /some/page HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % origin.port, 400)
        self.assertEqual(origin.connections, 0)
        await self.assert_served(proxy, origin)

    async def test_smuggling(self):
        """
        Requests framed two ways (Content-Length and Transfer-Encoding, or two lengths) get 400 and are never forwarded.
        """
        proxy, origin = await self.proxy_and_origin()
        url = origin.url("/echo").encode()
        smuggled = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % origin.url("/echo?smuggled").encode()
        cases = [
            b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"
            % (url, smuggled),
            b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n0\r\n\r\n%s"
            % (url, smuggled),
            b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n%s"
            % (url, len(smuggled), smuggled),
        ]
        for request in cases:
            await self.assert_error(proxy, request, 400)
        self.assertEqual(origin.requests, [])
        await self.assert_served(proxy, origin)

    async def test_forwarding_loop(self):
        """
        A request already carrying the proxy's own Via element is a loop: 403, not forwarded.
        """
        proxy, origin = await self.proxy_and_origin()
        await fetch(proxy_agent(proxy.port), b"GET", origin.url("/echo?learn"))
        [via] = origin.requests[0].header("via")
        request = b"GET %s HTTP/1.1\r\nHost: a\r\nVia: 1.0 elsewhere, %s\r\n\r\n" % (
            origin.url("/echo?loop").encode(), via.encode())
        await self.assert_error(proxy, request, 403)
        self.assertEqual([seen.uri for seen in origin.requests], ["/echo?learn"])
        await self.assert_served(proxy, origin)


class LifecycleTests(HttpTestCase):
    """
    Shutting down.
    """

    async def test_sigterm_download_in_flight(self):
        """
        On SIGTERM the proxy stops listening but a download in flight completes, then it exits 0.
        """
        size = 2 * 1024 * 1024
        proxy, origin = await self.proxy_and_origin()
        held = origin.next_held()
        responding = send(proxy_agent(proxy.port), b"GET", origin.url(f"/gate?size={size}"))
        await held
        response = await responding
        received = Body(keep=False)
        response.deliverBody(received)
        proxy.send_signal(signal.SIGTERM)
        await proxy.wait_for(rf"Port {proxy.port} Closed")
        refused = await refused_after_close(proxy.port)
        self.assertIsInstance(refused, ConnectionRefusedError)
        origin.release()
        await bounded(received.done)
        self.assertEqual((received.size, received.digest.hexdigest(), received.complete),
                         (size, pattern_digest(size), True), received.reason)
        self.assertEqual(await proxy.wait_exit(), "exit code 0", proxy.output.transcript())
