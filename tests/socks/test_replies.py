"""
Tests for L{netproxy.socks.replies}: a failed connection attempt as RFC
1928's reply code, and a reason for the log.
"""

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import Blocked, LocalDestination
from netproxy.socks.replies import connect_reply


class ConnectReplyTests(SynchronousTestCase):
    """
    Each kind of failure has its code.
    """

    def test_codes(self):
        """Blocked and local are 2, unreachable network 3, unreachable host or unknown name 4, refused 5,
        timeouts 6, anything else 1."""
        cases = [
            (Blocked("is 10.0.0.1, blocked by rule 10.0.0.0/8"), 2),
            (LocalDestination("127.0.0.1", "loopback", True), 2),
            (neterror.NoRouteError(string="101: Network is unreachable."), 3),
            (neterror.ConnectError(string="113: No route to host."), 4),
            (neterror.NoRouteError(), 4),
            (neterror.DNSLookupError("nowhere.test"), 4),
            (neterror.ConnectionRefusedError(), 5),
            (neterror.TimeoutError(), 6),
            (neterror.TCPTimedOutError(), 6),
            (DeferredTimeout(), 6),
            (CancelledError(), 6),
            (neterror.ConnectError(string="odd"), 1),
            (ValueError("odd"), 1),
        ]
        for exception, code in cases:
            self.assertEqual(connect_reply(Failure(exception), "example.test:80")[0], code, exception)

    def test_reasons(self):
        """The reason names the destination and what happened."""
        self.assertEqual(connect_reply(Failure(neterror.ConnectionRefusedError()), "example.test:80")[1],
                         "could not connect to example.test:80: connection refused")
        reason = connect_reply(Failure(LocalDestination("127.0.0.1", "loopback", True)), "localhost:80")[1]
        self.assertIn("--allow-local", reason)
        self.assertIn("resolves to 127.0.0.1", reason)
