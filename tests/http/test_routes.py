"""
Tests for L{netproxy.http.routes}: requests through the HTTP proxy go to a
parent proxy (in absolute form, with the parent's credentials), fail over
between parents, keep their connections in the pool per parent, bypass
the parents for C{--direct} destinations, and answer 502 when a parent
misbehaves, with the proxy serving on.
"""

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.message import parse_target
from netproxy.http.parents import Parents, parse_parent
from netproxy.http.routes import Route
from netproxy.testing import connect, fail_connection
from netproxy.this_host import LocalDestinations
from tests.http_helpers import CLIENT, ProxyTestCase, get, make_factory

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n\r\nhi"


class ParentTestCase(ProxyTestCase):
    """
    A proxy with two parents, 10.0.0.1:3128 (with credentials u:p) and
    10.0.0.2:3128, and C{--direct} for 127.0.0.1:8000's neighbour port 9000.
    """

    def setUp(self):
        super().setUp()
        self.parents = Parents([parse_parent("http://u:p@10.0.0.1:3128"), parse_parent("http://10.0.0.2:3128")],
                               RuleSet([parse_rule("*:9000")]), self.reactor)
        self.factory.parents = self.parents
        self.factory.pseudonym = b"netproxy-child"

    def url_for(self, name):
        """
        :returns: a path on the test origin whose URL goes first to the
            parent called C{name}.
        """
        for number in range(1000):
            path = b"/%d" % (number,)
            if self.parents.candidates(b"http://127.0.0.1:8000" + path)[0].name == name:
                return path
        raise AssertionError(name)

    def request(self, path, transport=None):
        """
        Send a GET for C{path} on the test origin from a new client (or the
        one with C{transport}).

        :returns: the client's transport.
        """
        if transport is None:
            _, transport = connect(self.factory, CLIENT)
        self.send(get(path), transport)
        return transport


class ForwardTests(ParentTestCase):
    """
    Requests go to their parent in absolute form.
    """

    def test_absolute_form_with_credentials(self):
        """The parent gets the whole URL, its own credentials (not the client's) and our Via."""
        path = self.url_for("10.0.0.1:3128")
        self.send(get(path, b"Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.1", 3128))
        self.assertEqual(self.origin().value(),
                         b"GET http://127.0.0.1:8000%s HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n"
                         b"Host: 127.0.0.1:8000\r\nVia: 1.1 netproxy-child\r\n\r\n" % (path,))

    def test_no_credentials(self):
        """A parent without credentials gets none."""
        path = self.url_for("10.0.0.2:3128")
        self.send(get(path))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.2", 3128))
        self.assertEqual(self.origin().value(), b"GET http://127.0.0.1:8000%s HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                                                b"Via: 1.1 netproxy-child\r\n\r\n" % (path,))

    def test_body_uploaded(self):
        """A request body follows the absolute-form head to the parent, a chunked one re-chunked."""
        path = self.url_for("10.0.0.2:3128")
        self.send(b"POST http://127.0.0.1:8000%s HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" % (path,))
        self.assertTrue(self.origin().value().endswith(b"Content-Length: 5\r\nVia: 1.1 netproxy-child\r\n\r\nhello"))
        _, transport = connect(self.factory, CLIENT)
        self.send(b"PUT http://127.0.0.1:8000%s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n" % (path,), transport)
        upstream = self.origin()
        self.assertTrue(upstream.value().startswith(b"PUT http://127.0.0.1:8000%s HTTP/1.1\r\n" % (path,)))
        self.assertTrue(upstream.value().endswith(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))

    def test_response_relayed(self):
        """The parent's response reaches the client with our Via after the parent's."""
        self.send(get(self.url_for("10.0.0.2:3128")))
        self.answer(self.origin(), ANSWER)
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n"
                                                 b"Via: 1.1 netproxy-child\r\n\r\nhi")

    def test_pooled_per_parent(self):
        """A parent's connection is pooled and carries the next request to that parent, for any origin."""
        path = self.url_for("10.0.0.2:3128")
        self.send(get(path))
        upstream = self.origin()
        self.answer(upstream, ANSWER)
        upstream.clear()
        self.request(path)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(upstream.value().startswith(b"GET http://127.0.0.1:8000%s HTTP/1.1\r\n" % (path,)))
        self.assertEqual(len(self.factory.pool), 0)

    def test_parent_and_origin_pooled_apart(self):
        """An idle connection to a parent is not taken by a direct request to the same address, nor the reverse."""
        self.send(get(self.url_for("10.0.0.2:3128")))
        self.answer(self.origin(), ANSWER)
        self.factory.parents = Parents([parse_parent("http://127.0.0.1:9000")], RuleSet(), self.reactor)
        _, transport = connect(self.factory, CLIENT)
        self.send(b"GET http://10.0.0.2:3128/ HTTP/1.1\r\n\r\n", transport)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_direct(self):
        """A destination matching --direct goes straight to the origin, in origin-form."""
        self.send(b"GET http://127.0.0.1:9000/d HTTP/1.1\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 9000))
        self.assertEqual(self.origin().value(), b"GET /d HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"
                                                b"Via: 1.1 netproxy-child\r\n\r\n")

    def test_loop_by_own_name(self):
        """A request carrying our own Via name is a loop; another netproxy's name is not."""
        self.send(get(b"/", b"Via: 1.1 netproxy\r\n"))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        _, transport = connect(self.factory, CLIENT)
        self.send(get(b"/", b"Via: 1.1 netproxy, 1.1 NETPROXY-child\r\n"), transport)
        self.assertError(403, "forwarding loop", transport)


class PagesTests(ParentTestCase):
    """
    The proxy's own pages are for no netproxy's clients, whatever its Via name.
    """

    def test_other_netproxy(self):
        """A page request that came through a netproxy of any default name is refused as a loop."""
        for via in (b"1.1 netproxy", b"1.1 netproxy-0badcafe"):
            _, transport = connect(self.factory, CLIENT)
            self.send(b"GET /metrics HTTP/1.1\r\nVia: %s\r\n\r\n" % (via,), transport)
            self.assertError(403, "forwarding loop", transport)


class RefusalTests(ParentTestCase):
    """
    Destinations reached through a parent are checked as written.
    """

    def test_local_literal(self):
        """With local destinations refused, a loopback address in the URL is refused before any parent."""
        self.factory.local = LocalDestinations(lambda: [])
        self.send(get())
        self.assertError(403, "destination 127.0.0.1:8000 is this host")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_localhost(self):
        """With local destinations refused, localhost is refused without being resolved."""
        self.factory.local = LocalDestinations(lambda: [])
        self.send(b"GET http://localhost/ HTTP/1.1\r\n\r\n")
        self.assertError(403, "localhost is a loopback name")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_name_goes_unresolved(self):
        """A name goes to the parent as written: the proxy looks nothing up."""
        self.factory.local = LocalDestinations(lambda: [])
        self.send(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        [client] = self.reactor.tcpClients
        self.assertIn(client[:2], [("10.0.0.1", 3128), ("10.0.0.2", 3128)])

    def test_blocked_name(self):
        """--block still refuses a name matched as written."""
        self.factory = make_factory(self.reactor, "*.blocked.example")
        self.factory.parents = self.parents
        _, transport = connect(self.factory, CLIENT)
        self.send(b"GET http://www.blocked.example/ HTTP/1.1\r\n\r\n", transport)
        self.assertError(403, "blocked by rule *.blocked.example", transport)
        self.assertEqual(self.reactor.tcpClients, [])


class FailoverTests(ParentTestCase):
    """
    A parent that fails is passed over, and its URLs go to the other.
    """

    def test_refused_fails_over(self):
        """A refused parent is marked down; the request, and the next for its URLs, go to the other."""
        path = self.url_for("10.0.0.1:3128")
        self.send(get(path))
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertEqual(self.reactor.tcpClients[1][:2], ("10.0.0.2", 3128))
        upstream = self.origin()
        self.answer(upstream, ANSWER)
        self.assertTrue(self.transport.value().endswith(b"hi"))
        upstream.clear()
        transport = self.request(path)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertTrue(upstream.value().startswith(b"GET http://127.0.0.1:8000%s " % (path,)))
        self.answer(upstream, ANSWER)
        self.assertTrue(transport.value().endswith(b"hi"))

    def test_back_after_back_off(self):
        """Once its wait is over, the parent gets its URLs again, and is up once it answers."""
        path = self.url_for("10.0.0.1:3128")
        self.send(get(path))
        fail_connection(self.reactor, ConnectionRefusedError())
        self.answer(self.origin(), ANSWER)
        self.reactor.advance(1)
        self.request(path)
        self.assertEqual(self.reactor.tcpClients[2][:2], ("10.0.0.1", 3128))
        self.answer(self.origin(), ANSWER)
        self.assertIsNone(self.parents.parents[0].state.retry_at)

    def test_accepts_then_resets(self):
        """A parent that accepts and then closes every connection unanswered keeps doubling its wait."""
        path = self.url_for("10.0.0.2:3128")
        for number, wait in enumerate((1, 2, 4)):
            _, transport = connect(self.factory, CLIENT)
            self.send(get(path), transport)
            self.assertEqual(self.reactor.tcpClients[-1][:2], ("10.0.0.2", 3128))
            self.origin().loseConnection()
            self.assertEqual(self.parents.parents[1].state.retry_at, self.reactor.seconds() + wait)
            self.reactor.advance(wait)

    def test_answer_brings_back(self):
        """A down parent whose wait is over is up again once it answers."""
        path = self.url_for("10.0.0.2:3128")
        self.parents.failed(self.parents.parents[1], "connection refused")
        self.reactor.advance(1)
        self.send(get(path))
        upstream = self.origin()
        self.assertIsNotNone(self.parents.parents[1].state.retry_at)
        self.answer(upstream, ANSWER)
        self.assertIsNone(self.parents.parents[1].state.retry_at)

    def test_client_leaves_while_connecting(self):
        """A client that leaves while a parent is being connected cancels the attempt; no parent is marked down."""
        self.send(get(self.url_for("10.0.0.1:3128")))
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(all(parent.state.retry_at is None for parent in self.parents.parents))

    def test_all_refused(self):
        """When both parents refuse, the client gets a 502 naming them."""
        self.send(get())
        fail_connection(self.reactor, ConnectionRefusedError())
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertError(502, "could not connect to any parent proxy")

    def test_garbage(self):
        """A parent answering garbage gives the client a 502 naming it, is marked down, and the proxy serves on."""
        path = self.url_for("10.0.0.2:3128")
        self.send(get(path))
        self.answer(self.origin(), b"SSH-2.0-OpenSSH\r\n\r\n")
        self.assertError(502, "parent proxy 10.0.0.2:3128")
        self.assertIsNotNone(self.parents.parents[1].state.retry_at)
        transport = self.request(path)
        self.assertEqual(self.reactor.tcpClients[1][:2], ("10.0.0.1", 3128))
        self.answer(self.origin(), ANSWER)
        self.assertTrue(transport.value().endswith(b"hi"))

    def test_parent_asks_for_credentials(self):
        """A parent's 407 is not relayed (the client's credentials never reach it): a 502 says so, parent up."""
        path = self.url_for("10.0.0.1:3128")
        self.send(get(path))
        self.answer(self.origin(), b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                   b"Proxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\n\r\n")
        self.assertError(502, "parent proxy 10.0.0.1:3128 refused the request: 407 Proxy Authentication Required "
                              "(check the credentials of its --parent)")
        self.assertIsNone(self.parents.parents[0].state.retry_at)

    def test_parent_errors_relayed(self):
        """The parent's other answers, its own 502 and 403 pages included, are relayed as they are."""
        self.send(get(self.url_for("10.0.0.1:3128")))
        self.answer(self.origin(), b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n"))
        self.assertTrue(self.transport.value().endswith(b"bad"))
        self.assertIsNone(self.parents.parents[0].state.retry_at)

    def test_closed_before_answer(self):
        """A parent closing a new connection before answering gives a 502 and is marked down."""
        self.send(get(self.url_for("10.0.0.2:3128")))
        self.origin().loseConnection()
        self.assertError(502, "parent proxy 10.0.0.2:3128: the upstream server closed the connection")
        self.assertIsNotNone(self.parents.parents[1].state.retry_at)

    def test_cut_short(self):
        """A response cut short after its head closes the client and does not mark the parent down."""
        self.send(get(self.url_for("10.0.0.2:3128")))
        upstream = self.origin()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi")
        upstream.loseConnection()
        self.assertFalse(self.transport.connected)
        self.assertIsNone(self.parents.parents[1].state.retry_at)

    def test_stale_pooled_not_down(self):
        """A pooled connection the parent closed as it was reused is retried, and the parent not marked down."""
        path = self.url_for("10.0.0.2:3128")
        self.send(get(path))
        upstream = self.origin()
        self.answer(upstream, ANSWER)
        transport = self.request(path)
        upstream.loseConnection()
        self.assertIsNone(self.parents.parents[1].state.retry_at)
        self.assertEqual(self.reactor.tcpClients[1][:2], ("10.0.0.2", 3128))
        self.answer(self.origin(), ANSWER)
        self.assertTrue(transport.value().endswith(b"hi"))

    def test_slow_answer_not_down(self):
        """A parent slow to answer (it may wait on the origin) gives a 504 and is not marked down."""
        self.send(get(self.url_for("10.0.0.2:3128")))
        self.origin()
        self.reactor.advance(30)
        self.assertError(504, "parent proxy 10.0.0.2:3128 (asked for 127.0.0.1:8000) did not answer within 30 seconds")
        self.assertIsNone(self.parents.parents[1].state.retry_at)


class RouteTests(ParentTestCase):
    """
    L{Route} says where a request goes.
    """

    def test_keys(self):
        """A request through a parent takes the parent's pooled connections; a direct one the origin's."""
        via = Route(self.factory, parse_target(b"GET", b"http://example.com/"), ("example.com", 80))
        direct = Route(self.factory, parse_target(b"GET", b"http://example.com:9000/"), ("example.com", 9000))
        self.assertEqual((via.key, direct.key, direct.parents), (via.parents[0].key, ("example.com", 9000), None))

    def test_without_parents(self):
        """Without parents, every request goes direct."""
        factory = make_factory(MemoryReactorClock())
        route = Route(factory, parse_target(b"GET", b"http://example.com/"), ("example.com", 80))
        self.assertEqual((route.key, route.parents), (("example.com", 80), None))
