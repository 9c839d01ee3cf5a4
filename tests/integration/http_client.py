"""
The client side of the HTTP proxy's end-to-end tests: starting a real
C{twistd netproxy http}, talking to it as an HTTP client (treq over
Twisted's L{ProxyAgent}), reading what a raw socket got back, matching its
access log lines, and the test cases that put these together.

Tests that must send or read exact bytes (malformed requests, pipelining,
HTTP/1.0, framing attacks) use the raw sockets of
L{tests.integration.daemon} and L{parse_replies}; every other request goes
through L{fetch} or L{send}.
"""

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from io import BytesIO

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import FileBodyProducer, ProxyAgent, ResponseDone

from tests.integration.daemon import (
    LISTEN,
    LOCALHOST,
    WAIT_TIMEOUT,
    bounded,
    fresh_directory,
    raw_exchange,
    start_daemon,
)
from tests.integration.http_origin import BODY, body_of, start_origin

PROXY_READY = ("ProxyFactory",)
HIT_STATUS = re.compile(r"^netproxy; hit; ttl=\d+$")


@dataclass
class Reply:
    """
    One HTTP response read from a raw socket.

    :ivar version: such as C{"HTTP/1.1"}.
    :ivar status: the status code.
    :ivar headers: C{(lower-case name, value)} pairs, in order.
    :ivar body: the body, de-chunked.
    """

    version: str
    status: int
    headers: list
    body: bytes

    def header(self, name):
        """
        :returns: every value of the field C{name} (lower case), in order.
        """
        return [value for key, value in self.headers if key == name]

    def tokens(self, name):
        """
        :returns: the lower-case comma-separated elements of every C{name}
            field.
        """
        return [token.strip().lower() for value in self.header(name) for token in value.split(",") if token.strip()]


def _dechunk(data):
    body = b""
    while True:
        line, crlf, data = data.partition(b"\r\n")
        if not crlf:
            raise AssertionError(f"incomplete chunk size line {line!r}")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        if len(data) < size + 2 or data[size:size + 2] != b"\r\n":
            raise AssertionError(f"incomplete or badly terminated chunk of {size} bytes")
        body += data[:size]
        data = data[size + 2:]
    # Trailer fields, then the empty line.
    while True:
        line, crlf, data = data.partition(b"\r\n")
        if not crlf:
            raise AssertionError("chunked body without its final empty line")
        if not line:
            return body, data


def parse_replies(data):
    """
    Split the bytes a client read into complete responses (none to a HEAD
    request).  A response with neither C{Content-Length} nor chunked
    framing takes the rest of the bytes (read until close).

    :returns: a list of L{Reply}.
    :raises AssertionError: on a truncated or malformed response.
    """
    replies = []
    while data:
        head, end, data = data.partition(b"\r\n\r\n")
        if not end:
            raise AssertionError(f"incomplete response head {head!r}")
        start, *lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = start.split(" ", 2)
        headers = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise AssertionError(f"bad header line {line!r} in {head!r}")
            headers.append((name.strip().lower(), value.strip()))
        reply = Reply(version, int(status), headers, b"")
        lengths = reply.header("content-length")
        if reply.status in (204, 304) or reply.status < 200:
            pass
        elif "chunked" in reply.tokens("transfer-encoding"):
            reply.body, data = _dechunk(data)
        elif lengths:
            size = int(lengths[0])
            if len(data) < size:
                raise AssertionError(f"body of {len(data)} bytes, {size} announced")
            reply.body, data = data[:size], data[size:]
        else:
            reply.body, data = data, b""
        replies.append(reply)
    return replies


class Body(Protocol):
    """
    Receives a response body as it arrives: hashes it, and keeps it too
    unless told not to.

    :ivar reason: why the body ended (L{ResponseDone} when it is complete).
    :ivar done: a L{Deferred} firing with this protocol when it has ended.
    """

    def __init__(self, keep=True):
        self.keep = keep
        self.data = []
        self.digest = hashlib.sha256()
        self.size = 0
        self.reason = None
        self.done = Deferred()

    def dataReceived(self, data):
        self.digest.update(data)
        self.size += len(data)
        if self.keep:
            self.data.append(data)

    def connectionLost(self, reason):
        self.reason = reason
        self.done.callback(self)

    @property
    def body(self):
        return b"".join(self.data)

    @property
    def complete(self):
        """
        The body ended as its framing said it would.
        """
        return self.reason is not None and self.reason.check(ResponseDone) is not None


def connect_through(port, authority, payload, timeout, source=None):
    """
    From a blocking socket (run it in a thread): send C{CONNECT authority}
    to the proxy on 127.0.0.1:C{port}, optionally from the address
    C{source}, then C{payload} through the tunnel, and read back as many
    bytes.

    :returns: C{(head, echoed)}: the proxy's answer up to its blank line,
        and the bytes read back after it.
    """
    bind = (source, 0) if source else None
    with socket.create_connection((LOCALHOST, port), timeout=timeout, source_address=bind) as sock:
        sock.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                return head, b""
            head += chunk
        head, _, echoed = head.partition(b"\r\n\r\n")
        sock.sendall(payload)
        while len(echoed) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            echoed += chunk
        return head, echoed


def proxy_endpoint(port):
    """
    :returns: a client endpoint for the proxy on C{127.0.0.1:port}.
    """
    return TCP4ClientEndpoint(reactor, LOCALHOST, port, timeout=WAIT_TIMEOUT)


def proxy_agent(port, pool=None):
    """
    :returns: a L{ProxyAgent} sending every request to the proxy on
        C{127.0.0.1:port}.
    """
    return ProxyAgent(proxy_endpoint(port), reactor, pool)


def send(agent, method, url, body=None, headers=None, timeout=WAIT_TIMEOUT):
    """
    Make a request with treq through C{agent}, without reading the body.

    Each request gets a client of its own, so no cookie carries over from
    one request to the next; redirects are not followed, so the test sees
    what the proxy answered.

    :param method: such as C{b"GET"}.
    :param url: the absolute URL, as L{str}.
    :param body: the request body: L{bytes} (sent with a length), or an
        L{IBodyProducer}.
    :param headers: C{{name: [value, ...]}}.
    :param timeout: seconds until the request is cancelled, so nothing
        outlives a failed test.
    :returns: a L{Deferred} firing with the response, whose body has not
        been read.
    """
    # bytes go through a producer of their own, so that an empty body is
    # still sent (with Content-Length: 0) rather than left out.
    producer = FileBodyProducer(BytesIO(body)) if isinstance(body, bytes) else body
    return HTTPClient(agent).request(method.decode("ascii"), url, data=producer, headers=headers, unbuffered=True,
                                     allow_redirects=False, timeout=timeout, reactor=reactor)


async def fetch(agent, method, url, body=None, headers=None, keep=True):
    """
    Make a request with treq through C{agent} (see L{send}) and read the
    whole response.

    :returns: C{(response, body)}, the body a L{Body}.
    """
    response = await send(agent, method, url, body, headers)
    received = Body(keep)
    response.deliverBody(received)
    await bounded(received.done)
    return response, received


async def start_proxy(testcase, *args):
    """
    Start C{twistd netproxy http} listening on an ephemeral loopback port,
    writing its access log to standard output, allowing the tests' local
    origins (C{--allow-local}), with C{args}.

    :returns: the L{tests.integration.daemon.Daemon}.
    """
    return await start_local_proxy(testcase, "--allow-local", *args)


async def start_local_proxy(testcase, *args):
    """
    Start C{twistd netproxy http} as L{start_proxy} does, but with only
    C{args}: without C{--allow-local}, it refuses local destinations.

    :returns: the L{tests.integration.daemon.Daemon}.
    """
    return await start_daemon(testcase, "http", "--listen", LISTEN, "--access-log", "-", *args, ready=PROXY_READY)


def access_line(method, url, status, size=r"\d+"):
    """
    :returns: a regular expression matching the proxy's access log line
        (Combined Log Format, then cache status and seconds) for a request
        from 127.0.0.1, answered with C{size} bytes of body.
    """
    return (rf'^127\.0\.0\.1 - \S+ \[[^]]+\] "{method} {re.escape(url)} HTTP/1\.[01]" {status} {size} '
            r'"[^"]*" "[^"]*" \S+ \d+\.\d+$')


def cache_status(response):
    """
    :returns: the parameters of the proxy's C{Cache-Status} member in
        C{response}, such as C{["hit", "ttl=57"]}; L{None} without one.
    """
    for value in response.headers.getRawHeaders(b"cache-status", []):
        for member in value.decode("latin-1").split(","):
            name, *params = (part.strip() for part in member.split(";"))
            if name == "netproxy":
                return params
    return None


class HttpTestCase(TestCase):
    """
    Helpers for tests with a proxy and an origin.
    """

    timeout = 60

    async def proxy_and_origin(self, *args):
        """
        Start an origin, then a proxy with C{args} (so the proxy is stopped
        first at cleanup).

        :returns: C{(proxy, origin)}.
        """
        origin = start_origin(self)
        return await start_proxy(self, *args), origin

    async def assert_served(self, proxy, origin):
        """
        A good request through C{proxy} still gets the origin's answer.
        """
        since = proxy.mark()
        url = origin.url("/fixed?size=1000")
        response, received = await Deferred.fromCoroutine(fetch(proxy_agent(proxy.port), b"GET", url)).addErrback(
            lambda failure: self.fail(f"a good request failed: {failure.value!r}\n{proxy.output.transcript()}"))
        self.assertEqual((response.code, received.body, received.complete), (200, body_of(1000), True),
                         f"the proxy no longer serves good requests\n{proxy.output.transcript()}")
        await proxy.wait_for(access_line("GET", url, 200), since)

    async def assert_error(self, proxy, request, status, cause=None):
        """
        Send C{request} on a new connection: the proxy answers C{status}
        with a short HTML page naming the cause (matching C{cause}), then
        closes the connection.

        :returns: the L{Reply}.
        """
        reply = await raw_exchange(proxy.port, request, until_closed=True)
        return self.check_error(reply.data, reply.closed, status, cause, request)

    def check_error(self, data, closed, status, cause, request):
        """
        See L{assert_error}.
        """
        replies = parse_replies(data)
        self.assertEqual(len(replies), 1, f"{request[:100]!r} got {data!r}")
        reply = replies[0]
        self.assertEqual(reply.status, status, f"{request[:100]!r} got {data!r}")
        self.assertTrue(reply.header("content-type") and reply.header("content-type")[0].startswith("text/html"),
                        reply.headers)
        self.assertLess(len(reply.body), 4096)
        self.assertNotIn(b"Traceback", reply.body)
        if cause is not None:
            self.assertRegex(reply.body.decode("utf-8", "replace"), cause)
        self.assertTrue(closed, f"the proxy left the connection open after {status}: {data!r}")
        return reply


class CacheTestCase(HttpTestCase):
    """
    Helpers for tests through a caching proxy.
    """

    def cache_dir(self):
        """
        :returns: the absolute path of a new directory for a cache, the
            daemon running elsewhere.
        """
        return os.path.join(fresh_directory(self), "cache")

    async def cached_proxy(self, *args, cache_dir=None):
        """
        Start a proxy with a cache in C{cache_dir} (by default its own new
        one) and C{args}.

        :returns: the L{tests.integration.daemon.Daemon}.
        """
        return await start_proxy(self, "--cache-dir", cache_dir or self.cache_dir(), *args)

    async def request(self, proxy, url, method=b"GET", headers=None, body=None, status=200, size=r"\d+", keep=True):
        """
        Make a request through C{proxy} and wait for its access line.

        :param status: the status the access line must show.
        :param size: a regular expression for the body size it must show.
        :returns: C{(response, body, cache column of the access line)}, the
            body a L{Body}.
        """
        since = proxy.mark()
        response, received = await fetch(proxy_agent(proxy.port), method, url, body, headers, keep)
        self.assertTrue(received.complete, received.reason)
        line = await proxy.wait_for(access_line(method.decode("ascii"), url, status, size), since)
        return response, received, line.group(0).split()[-2]

    async def assert_hit(self, proxy, url, body=BODY, headers=None):
        """
        A request for C{url} is answered from the cache with C{body}: a
        hit in C{Cache-Status}, an C{Age}, and HIT in the access log.

        :returns: the response.
        """
        response, received, column = await self.request(proxy, url, headers=headers)
        self.assertEqual((response.code, received.body, column), (200, body, "HIT"), proxy.output.transcript())
        self.assertRegex("; ".join(["netproxy", *cache_status(response)]), HIT_STATUS)
        ages = response.headers.getRawHeaders(b"age", [])
        self.assertEqual(len(ages), 1, f"a hit needs one Age field: {ages}")
        self.assertTrue(ages[0].isdigit() and int(ages[0]) < 60, ages)
        return response

    async def assert_stored(self, proxy, url, body=BODY, headers=None):
        """
        A request for C{url} goes to the origin, which answers 200 with
        C{body}, and the answer is stored.
        """
        response, received, column = await self.request(proxy, url, headers=headers)
        self.assertEqual((response.code, received.body, column), (200, body, "MISS"), proxy.output.transcript())
        self.assertEqual(cache_status(response), ["fwd=uri-miss", "fwd-status=200", "stored"])
