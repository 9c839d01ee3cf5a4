"""
What the HTTP proxy's tests share: a client address and an origin URL,
requests and responses to send, a proxy on a memory reactor with one client
connected (L{ProxyTestCase}), and the same with a cache in memory
(L{CacheTestCase}).
"""

import html

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.responses import Cache
from netproxy.http.proxy import ProxyFactory
from netproxy.testing import MemoryStore, complete_connection, connect

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
URL = b"http://127.0.0.1:8000"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
# What the client gets for OK, keep-alive.
OK_FORWARDED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n\r\nhi"


def get(path=b"/", headers=b"", version=b"1.1", method=b"GET"):
    """
    :returns: a request for C{path} on the test origin, in absolute-form.
    """
    return b"%s %s%s HTTP/%s\r\n%s\r\n" % (method, URL, path, version, headers)


def make_factory(reactor, *blocked):
    """
    :returns: a L{ProxyFactory} on C{reactor} for loopback clients, refusing
        the destinations C{blocked}, CONNECT to port 443 only, with 30 and
        10 second timeouts.
    """
    return ProxyFactory(reactor, allow=RuleSet([parse_rule("127.0.0.0/8")]),
                        rules=RuleSet([parse_rule(rule) for rule in blocked]), connect_ports={443}, timeout=30,
                        connect_timeout=10)


def split_response(data):
    """
    :returns: the status line, the header fields as C{(name, value)} pairs
        and the body of the response in C{data}.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines[0], [tuple(line.split(b": ", 1)) for line in lines[1:]], body


class ProxyTestCase(SynchronousTestCase):
    """
    A L{ProxyFactory} on a memory reactor, and one client connected to it.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor, "127.0.0.66", "*:25")
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def send(self, data, transport=None):
        """
        Deliver C{data} from a client (C{self.transport}'s by default).
        """
        (transport or self.transport).protocol.dataReceived(data)

    def origin(self, index=-1):
        """
        Let connection attempt C{index} succeed.

        :returns: the origin's transport, where the proxy writes.
        """
        return complete_connection(self.reactor, index)[1]

    def answer(self, origin, data):
        """
        Deliver C{data} from the origin connected by C{origin}.
        """
        origin.protocol.dataReceived(data)

    def assertError(self, status, cause, transport=None):
        """
        The client got a C{status} page naming C{cause}, and was closed.
        """
        transport = transport or self.transport
        status_line, headers, body = split_response(transport.value())
        self.assertEqual(status_line.split(b" ")[:2], [b"HTTP/1.1", b"%d" % (status,)])
        self.assertIn((b"Content-Type", b"text/html; charset=utf-8"), headers)
        self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
        self.assertIn((b"Connection", b"close"), headers)
        self.assertIn(html.escape(cause).encode("utf-8"), body)
        self.assertNotIn(b"Traceback", body)
        self.assertFalse(transport.connected)


class LocalDestinationTestCase(SynchronousTestCase):
    """
    A proxy whose reactor resolves L{tests.address_helpers.NAMES}, for
    requests to every spelling of this host.
    """

    def setUp(self):
        from tests.address_helpers import name_resolver

        self.reactor = MemoryReactorClock()
        self.reactor.installNameResolver(name_resolver())

    def refused(self, factory, request, status=403):
        """
        Send C{request} from a new client of C{factory}.

        :returns: the body of the C{status} page the client got.
        """
        protocol, transport = connect(factory, CLIENT)
        protocol.dataReceived(request)
        status_line, headers, body = split_response(transport.value())
        self.assertEqual(status_line.split(b" ")[:2], [b"HTTP/1.1", b"%d" % (status,)], request)
        self.assertFalse(transport.connected)
        return html.unescape(body.decode("utf-8"))


FRESH = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\nfresh"
STALE_WITH_ETAG = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: \"v1\"\r\nContent-Length: 3\r\n\r\nold"


class CacheTestCase(ProxyTestCase):
    """
    A proxy with a cache in memory, and an access log recording events.
    """

    def setUp(self):
        super().setUp()
        self.store = MemoryStore(10 * 1024 * 1024, scheduler=next_turn(self.reactor))
        self.factory.cache = Cache(self.store)
        self.events = []
        self.factory.access_log.add_observer(self.events.append)
        self.origins = []

    def upstream(self):
        """
        :returns: the transport of the origin connection the last request
            went on: a new one when the proxy dialled, else the pooled one.
        """
        if len(self.reactor.tcpClients) > len(self.origins):
            self.origins.append(self.origin())
        return self.origins[-1]

    def upstream_requests(self):
        """
        :returns: how many requests reached the origin.
        """
        return sum(origin.value().count(b" HTTP/1.1\r\nHost: ") for origin in self.origins)

    def fetch(self, request=None, answer=None):
        """
        Send C{request} (a GET by default) on a new client connection; let
        the origin answer C{answer} when given, then run the reactor's
        pending turns.

        :returns: the client's transport.
        """
        _, transport = connect(self.factory, CLIENT)
        transport.protocol.dataReceived(request or get())
        if answer is not None:
            self.answer(self.upstream(), answer)
        for _ in range(50):
            self.reactor.advance(0)
        return transport

    def field(self, transport, name):
        """
        :returns: the value of field C{name} in the response C{transport}
            received, or L{None}.
        """
        for key, value in split_response(transport.value())[1]:
            if key.lower() == name.lower():
                return value
        return None

    def cache_results(self):
        return [event["cache"] for event in self.events]
