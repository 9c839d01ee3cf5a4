"""
Tests for L{netproxy.http.upstream}: an upstream connection reads one
response at a time and tells its receiver, in order, what arrives; it says
whether the connection may carry another request, and reports a pooled
connection the origin closes.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from netproxy.http.interfaces import IResponseReceiver
from netproxy.http.message import parse_target
from netproxy.http.parents import parse_parent
from netproxy.http.upstream import UpstreamConnection
from netproxy.instruments import Gauge


@implementer(IResponseReceiver)
class Receiver:
    """
    Records what an upstream connection tells it, as C{(name, argument)}.
    """

    def __init__(self):
        self.calls = []

    def interim_response(self, head):
        self.calls.append(("interim", head.status))

    def response_head(self, head, framing):
        self.calls.append(("head", (head.status, framing.kind)))

    def response_body(self, piece):
        self.calls.append(("body", piece))

    def response_done(self, reusable):
        self.calls.append(("done", reusable))

    def upstream_failed(self, error):
        self.calls.append(("failed", error.status))


class UpstreamConnectionTests(SynchronousTestCase):
    """
    L{UpstreamConnection} frames responses and reports them to its receiver.
    """

    def setUp(self):
        self.lost = []
        self.gauge = Gauge("upstream", "open upstream connections")
        self.connection = UpstreamConnection(("127.0.0.1", 8000), self.gauge, self.lost.append)
        self.transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        self.transport.protocol = self.connection
        self.connection.makeConnection(self.transport)
        self.receiver = Receiver()

    def test_response(self):
        """Head, body and end are told in order; a kept connection with a framed body is reusable."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(self.receiver.calls, [("head", (200, "length")), ("body", b"hi"), ("done", True)])
        self.assertIsNone(self.connection.receiver)

    def test_interim(self):
        """A 1xx response is told before the final one."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.receiver.calls, [("interim", 100), ("head", (204, "none")), ("done", True)])

    def test_head_response(self):
        """The response to HEAD has no body, whatever its Content-Length says."""
        self.connection.start(self.receiver, b"HEAD")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
        self.assertEqual(self.receiver.calls, [("head", (200, "none")), ("done", True)])

    def test_extra_bytes(self):
        """Bytes after the response make the connection unfit for another request."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiX")
        self.assertEqual(self.receiver.calls[-1], ("done", False))

    def test_origin_closes(self):
        """An origin that says Connection: close does not have its connection reused."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.receiver.calls[-1], ("done", False))

    def test_close_delimited(self):
        """A body delimited by the connection's end is complete when it closes."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nab")
        self.transport.loseConnection()
        self.assertEqual(self.receiver.calls, [("head", (200, "close")), ("body", b"ab"), ("done", False)])

    def test_cut_short(self):
        """A connection closed in the middle of a framed body fails with 502."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        self.transport.loseConnection()
        self.assertEqual(self.receiver.calls[-1], ("failed", 502))

    def test_closed_before_answering(self):
        """A connection closed before the response head fails with 502."""
        self.connection.start(self.receiver, b"GET")
        self.transport.loseConnection()
        self.assertEqual(self.receiver.calls, [("failed", 502)])

    def test_malformed(self):
        """An unreadable response head fails with 502, and the connection is closed."""
        self.connection.start(self.receiver, b"GET")
        self.connection.dataReceived(b"NONSENSE\r\n\r\n")
        self.assertEqual(self.receiver.calls, [("failed", 502)])
        self.assertFalse(self.transport.connected)

    def test_detached(self):
        """A detached connection tells its former receiver nothing more."""
        self.connection.start(self.receiver, b"GET")
        self.connection.detach()
        self.transport.loseConnection()
        self.assertEqual(self.receiver.calls, [])

    def test_idle_talks(self):
        """An idle connection the origin writes to is closed."""
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertFalse(self.transport.connected)

    def test_idle_lost(self):
        """An idle connection the origin closes is reported, so the pool forgets it."""
        self.transport.loseConnection()
        self.assertEqual(self.lost, [self.connection])

    def test_gauge(self):
        """The connection counts in the gauge while it is open."""
        self.assertEqual(self.gauge.value(), 1)
        self.transport.loseConnection()
        self.assertEqual(self.gauge.value(), 0)


class RequestBytesTests(SynchronousTestCase):
    """
    L{UpstreamConnection.request_bytes}: what a request head becomes on
    the connection.
    """

    HEAD = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"

    def test_origin(self):
        """To an origin, the head goes as it is."""
        target = parse_target(b"GET", b"http://example.com/a")
        self.assertEqual(UpstreamConnection(("example.com", 80)).request_bytes(self.HEAD, target), self.HEAD)

    def test_parent(self):
        """To a parent, it goes in absolute form with the parent's credentials."""
        parent = parse_parent("http://u:p@10.0.0.1:3128")
        connection = UpstreamConnection(parent.key, parent=parent)
        target = parse_target(b"GET", b"http://example.com/a")
        self.assertEqual(connection.request_bytes(self.HEAD, target),
                         b"GET http://example.com/a HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n"
                         b"Host: example.com\r\n\r\n")
