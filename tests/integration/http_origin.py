"""
An HTTP origin server for the HTTP proxy's end-to-end tests: a
L{twisted.web.server.Site} in the test process on C{127.0.0.1} (or C{::1},
for an IPv6-only origin), port 0 (plain, or TLS for CONNECT tunnels), whose
resources let a test see what reached the origin and control what comes
back:

    - C{/echo}: records the request (method, path, header lines, body, the
      connection it came on) and answers them as JSON;
    - C{/fixed?size=N}: N bytes of L{pattern} with a C{Content-Length};
    - C{/stream?size=N[&length=1]}: N bytes of L{pattern} written by a pull
      producer one block at a time (so the body is never held in memory at
      once), chunked unless C{length=1} asks for a C{Content-Length};
    - C{/digest}: answers the size and SHA-256 of the request body as JSON;
    - C{/hang}: never answers (the test can wait until the request is
      abandoned);
    - C{/gate?size=N}: sends the head and the first half of N bytes, then
      waits for the test to call L{Origin.release} before sending the rest.

Every TCP connection accepted is counted, so a test can tell whether the
proxy reused its upstream connections.

A test adds the pages it needs with L{add_page}: a L{Page} answers the
status, header fields and body the test sets (and may change), and records
every request that reaches it.  L{stoppable_origin} is an origin the test
may stop before it ends.

L{SelfSignedTLS} serves TLS with a certificate made on the spot.
"""

import datetime
import hashlib
import json
import struct
from dataclasses import dataclass, field
from random import Random

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.protocols.policies import WrappingFactory
from twisted.web.http import CACHED
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from tests.integration.daemon import LOCALHOST, WAIT_TIMEOUT

BLOCK = 256 * 1024
_SEED = 20240917
_BASE = Random(_SEED).randbytes(BLOCK)
# A body for a L{Page}, with bytes that text handling would mangle.
BODY = b"stored \x00\xff\r\n body " * 200
MAX_AGE_60 = (b"Cache-Control", b"max-age=60")


def pattern_block(index):
    """
    :returns: block C{index} of the test pattern: L{BLOCK} pseudo-random
        bytes, the first eight replaced by the block's number, so a block
        lost, repeated or reordered on the way changes the digest.
    """
    return struct.pack(">Q", index) + _BASE[8:]


def pattern(size):
    """
    Generate the first C{size} bytes of the test pattern, a block at a time.

    :returns: an iterator of L{bytes}.
    """
    index = 0
    while size > 0:
        block = pattern_block(index)
        if size < BLOCK:
            block = block[:size]
        yield block
        size -= len(block)
        index += 1


def body_of(size):
    """
    :returns: the first C{size} bytes of the origin's test pattern.
    """
    return b"".join(pattern(size))


def pattern_digest(size):
    """
    :returns: the SHA-256 hex digest of the first C{size} bytes of the
        origin's test pattern, computed a block at a time.
    """
    digest = hashlib.sha256()
    for block in pattern(size):
        digest.update(block)
    return digest.hexdigest()


@dataclass
class Seen:
    """
    A request as the origin received it.

    :ivar method: the method, such as C{"GET"}.
    :ivar uri: the request target, such as C{"/echo?x=1"}.
    :ivar headers: the header lines, C{(lower-case name, value)} pairs.
    :ivar body: the request body.
    :ivar client_port: the port of the connection it came on.
    """

    method: str
    uri: str
    headers: list = field(default_factory=list)
    body: bytes = b""
    client_port: int = 0

    def header(self, name):
        """
        :returns: every value of the field C{name} (lower case), in order.
        """
        return [value for key, value in self.headers if key == name]


def _seen(request):
    headers = [(name.decode("latin-1").lower(), value.decode("latin-1"))
               for name, values in request.requestHeaders.getAllRawHeaders() for value in values]
    return Seen(request.method.decode("ascii"), request.uri.decode("latin-1"), headers,
                request.content.read(), request.getClientAddress().port)


def _size(request):
    return int(request.args[b"size"][0])


class _Echo(Resource):
    isLeaf = True

    def __init__(self, origin):
        super().__init__()
        self.origin = origin

    def render(self, request):
        seen = _seen(request)
        self.origin.requests.append(seen)
        body = json.dumps({"method": seen.method, "uri": seen.uri, "headers": seen.headers,
                           "body": seen.body.decode("latin-1")}).encode("utf-8")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"%d" % len(body))
        # Hop-by-hop fields in the response, for the proxy to remove.
        request.setHeader(b"x-origin-hop", b"for the proxy only")
        request.setHeader(b"connection", b"x-origin-hop")
        request.setHeader(b"keep-alive", b"timeout=300")
        return body


class _Digest(Resource):
    isLeaf = True

    def render(self, request):
        # twisted.web keeps a large body in a temporary file: hash it a
        # block at a time.
        digest = hashlib.sha256()
        size = 0
        for block in iter(lambda: request.content.read(BLOCK), b""):
            digest.update(block)
            size += len(block)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"size": size, "sha256": digest.hexdigest()}).encode("ascii")


class _Fixed(Resource):
    isLeaf = True

    def render_GET(self, request):
        size = _size(request)
        request.setHeader(b"content-type", b"application/octet-stream")
        return b"".join(pattern(size))


class _PatternProducer:
    """
    A pull producer writing the test pattern to a request, one block each
    time the transport asks for more.
    """

    def __init__(self, request, size):
        self.request = request
        self.blocks = pattern(size)

    def resumeProducing(self):
        block = next(self.blocks, None)
        if block is None:
            self.request.unregisterProducer()
            self.request.finish()
        else:
            self.request.write(block)

    def stopProducing(self):
        self.blocks = iter(())


class _Stream(Resource):
    isLeaf = True

    def render_GET(self, request):
        size = _size(request)
        request.setHeader(b"content-type", b"application/octet-stream")
        if request.args.get(b"length") == [b"1"]:
            request.setHeader(b"content-length", b"%d" % size)
        request.registerProducer(_PatternProducer(request, size), False)
        return NOT_DONE_YET


class _Hang(Resource):
    isLeaf = True

    def __init__(self, origin):
        super().__init__()
        self.origin = origin

    def render(self, request):
        self.origin.requests.append(_seen(request))
        finished = request.notifyFinish()
        # The proxy giving up is the expected end of this request.
        finished.addErrback(lambda failure: None)
        self.origin._arrived(("hang", finished))
        return NOT_DONE_YET


class _Gate(Resource):
    isLeaf = True

    def __init__(self, origin):
        super().__init__()
        self.origin = origin

    def render_GET(self, request):
        body = b"".join(pattern(_size(request)))
        half = len(body) // 2
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body[:half])
        self.origin._gated.append((request, body[half:]))
        self.origin._arrived(("gate", request))
        return NOT_DONE_YET


class _CountingFactory(WrappingFactory):
    """
    Wraps the site to count the TCP connections it accepts and to close the
    open ones when the test ends.
    """

    noisy = False

    def __init__(self, site):
        super().__init__(site)
        self.accepted = 0
        self._lost = {}

    def registerProtocol(self, protocol):
        super().registerProtocol(protocol)
        self.accepted += 1
        self._lost[protocol] = Deferred()

    def unregisterProtocol(self, protocol):
        super().unregisterProtocol(protocol)
        self._lost.pop(protocol).callback(None)

    def close_all(self):
        """
        Abort every open connection.

        :returns: a L{Deferred} firing once all are closed.
        """
        waiting = list(self._lost.values())
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        done = succeed(None)
        for deferred in waiting:
            done.addCallback(lambda _, deferred=deferred: deferred)
        return done


@implementer(IOpenSSLContextFactory)
class SelfSignedTLS:
    """
    A server TLS context factory with a fresh self-signed certificate for
    C{localhost} (made with C{cryptography}; Twisted's
    C{KeyPair.selfSignedCert} goes through deprecated pyOpenSSL APIs).

    :ivar certificate: the certificate, DER-encoded, for clients to pin.
    """

    def __init__(self):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate = certificate.public_bytes(Encoding.DER)
        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(certificate)
        self._context.use_privatekey(key)

    def getContext(self):
        return self._context


class Origin:
    """
    The origin server; made by L{start_origin}.

    :ivar port: the port it listens on.
    :ivar requests: the L{Seen} requests of C{/echo} and C{/hang}, in order.
    """

    def __init__(self):
        self.requests = []
        self._gated = []
        self._waiters = []
        root = Resource()
        root.putChild(b"echo", _Echo(self))
        root.putChild(b"digest", _Digest())
        root.putChild(b"fixed", _Fixed())
        root.putChild(b"stream", _Stream())
        root.putChild(b"hang", _Hang(self))
        root.putChild(b"gate", _Gate(self))
        self.site = Site(root)
        self.site.noisy = False
        self.site.log = lambda request: None
        self.factory = _CountingFactory(self.site)
        self.listening = None
        # The address it listens on, as a URL's authority writes it.
        self.host = LOCALHOST

    @property
    def port(self):
        return self.listening.getHost().port

    @property
    def connections(self):
        """
        How many TCP connections it has accepted so far.
        """
        return self.factory.accepted

    def url(self, path):
        """
        :returns: the absolute URL of C{path} on this origin, as L{str}.
        """
        return f"http://{self.host}:{self.port}{path}"

    def _arrived(self, event):
        waiters, self._waiters = self._waiters, []
        for deferred in waiters:
            deferred.callback(event)

    def next_held(self, timeout=WAIT_TIMEOUT):
        """
        :returns: a L{Deferred} firing when the next C{/hang} or C{/gate}
            request arrives, with C{("hang", finished)} (C{finished} fires
            when the request's connection is lost) or C{("gate", request)}.
        """
        deferred = Deferred()
        self._waiters.append(deferred)
        return deferred.addTimeout(timeout, reactor)

    def release(self):
        """
        Let every waiting C{/gate} request send the rest of its body.
        """
        gated, self._gated = self._gated, []
        for request, rest in gated:
            request.write(rest)
            request.finish()

    async def stop(self):
        await self.listening.stopListening()
        await self.factory.close_all()


def start_origin(testcase, tls=None, interface=LOCALHOST):
    """
    Listen with a new L{Origin} on C{interface} (C{127.0.0.1}, or C{::1}
    for an origin reachable over IPv6 only), port 0, until the test ends.

    :param tls: a context factory (such as L{SelfSignedTLS}) to serve
        HTTPS instead of HTTP.
    :returns: the L{Origin}.
    """
    origin = Origin()
    if ":" in interface:
        origin.host = f"[{interface}]"
    if tls is None:
        origin.listening = reactor.listenTCP(0, origin.factory, interface=interface)
    else:
        origin.listening = reactor.listenSSL(0, origin.factory, tls, interface=interface)
    testcase.addCleanup(origin.stop)
    return origin


class Page(Resource):
    """
    An origin page answering what the test sets, the test free to change it
    between requests.  An C{ETag} among the fields is honoured: a request
    whose C{If-None-Match} names it is answered 304, without a body.

    :ivar body: the body of its answers.
    :ivar fields: C{(name, value)} header fields of its answers.
    :ivar status: the status of its answers (but for 304s).
    :ivar seen: the L{tests.integration.http_origin.Seen} requests that
        reached it, in order.
    :ivar answered: the status it answered each of them with.
    """

    isLeaf = True

    def __init__(self, *fields, body=BODY, status=200):
        super().__init__()
        self.body = body
        self.fields = list(fields)
        self.status = status
        self.seen = []
        self.answered = []

    def body_for(self, request):
        """
        :returns: the body answering C{request}.
        """
        return self.body

    def render(self, request):
        self.seen.append(_seen(request))
        request.setResponseCode(self.status)
        etag = None
        for name, value in self.fields:
            if name.lower() == b"etag":
                etag = value
            else:
                request.responseHeaders.addRawHeader(name, value)
        if etag is not None and request.setETag(etag) is CACHED:
            self.answered.append(request.code)
            return b""
        self.answered.append(request.code)
        return self.body_for(request)


def add_page(origin, name, page):
    """
    Serve C{page} at C{/name} on C{origin}.

    :returns: its absolute URL.
    """
    origin.site.resource.putChild(name.encode("ascii"), page)
    return origin.url("/" + name)


def stoppable_origin(testcase):
    """
    Listen with a new L{Origin} that the test may stop itself (by
    L{Origin.stop}) before it ends; one still listening is stopped at
    cleanup.

    :returns: the L{Origin}.
    """
    origin = Origin()
    origin.listening = reactor.listenTCP(0, origin.factory, interface=LOCALHOST)

    async def stop_if_listening():
        if origin.listening.connected:
            await origin.stop()

    testcase.addCleanup(stop_if_listening)
    return origin
