"""
Tests for L{netproxy.errors}: every error a user can meet is a
L{NetproxyError} carrying its message, and an L{HTTPError} carries the
answer the proxy gives.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy import errors
from netproxy.errors import AuthFileError, Blocked, HTTPError, LocalDestination, NetproxyError


class NetproxyErrorTests(SynchronousTestCase):
    """
    One base class lets a role catch every error meant for people at once.
    """

    def test_every_error_is_a_netproxy_error(self):
        """Every exception class of the module derives from NetproxyError."""
        classes = [value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)]
        self.assertIn(AuthFileError, classes)
        for cls in classes:
            self.assertTrue(issubclass(cls, NetproxyError), cls)

    def test_message(self):
        """The text an error is raised with is what str() shows the operator."""
        error = AuthFileError("users.htpasswd line 2: expected user:hash")
        self.assertEqual(str(error), "users.htpasswd line 2: expected user:hash")


class HTTPErrorTests(SynchronousTestCase):
    """
    An HTTP error knows the status to answer and whether to close.
    """

    def test_closes_by_default(self):
        """Without saying otherwise, the connection is closed after the answer."""
        error = HTTPError(400, "malformed request line")
        self.assertEqual((error.status, str(error), error.close), (400, "malformed request line", True))

    def test_keep_open(self):
        """An error whose framing is not in doubt may leave the connection open."""
        error = HTTPError(404, "no such page", close=False)
        self.assertEqual((error.status, error.close), (404, False))


class DestinationErrorTests(SynchronousTestCase):
    """
    A refused destination says why, in words for the client and the log.
    """

    def test_blocked_by_rule(self):
        """A rule's refusal names the address, how it was reached, and the rule."""
        self.assertEqual(str(Blocked.by_rule("10.0.0.1", True, False, "10.0.0.0/8")),
                         "resolves to 10.0.0.1, blocked by rule 10.0.0.0/8")
        self.assertEqual(str(Blocked.by_rule("0.0.0.0", False, True, "127.0.0.0/8")),
                         "is 0.0.0.0 (this host), blocked by rule 127.0.0.0/8")

    def test_local_destination_texts(self):
        """A local destination's answer names the place, the reason and --allow-local."""
        for kind, resolved, expected in [
            ("loopback", False, "destination 127.1:80 is this host: 127.0.0.1 is a loopback address "
                                "(--allow-local allows it)"),
            ("loopback", True, "destination 127.1:80 is this host: it resolves to 127.0.0.1, a loopback address "
                               "(--allow-local allows it)"),
            ("own", False, "destination 127.1:80 is this host: 127.0.0.1 is one of this host's own interface "
                           "addresses (--allow-local allows it)"),
            ("link-local", False, "destination 127.1:80 is on this host's link: 127.0.0.1 is a link-local "
                                  "address (--allow-local allows it)"),
        ]:
            error = LocalDestination("127.0.0.1", kind, resolved)
            self.assertIsInstance(error, Blocked)
            self.assertEqual(error.answer("127.1:80"), expected)
            self.assertEqual(str(error), error.reason())
