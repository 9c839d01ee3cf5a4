"""
Tests for L{netproxy.errors}: every error a user can meet is a
L{NetproxyError} carrying its message, and an L{HTTPError} carries the
answer the proxy gives.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy import errors
from netproxy.errors import AuthFileError, HTTPError, NetproxyError


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
