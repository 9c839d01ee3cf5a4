"""
Tests for L{netproxy.socks.options}: C{twistd netproxy socks}'s options,
checked and converted, with errors naming the option.
"""

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.passwords import AuthFile
from tests.password_helpers import USERS
from tests.test_tap import parse


class SocksOptionsTests(SynchronousTestCase):
    """
    Defaults that work on a laptop, and errors naming the option.
    """

    def test_defaults(self):
        """Port 1080 on loopback, loopback and unix clients, no auth, no metrics, the documented timeouts."""
        options = parse("socks").subOptions
        self.assertEqual(options["listen"], ["tcp:1080:interface=127.0.0.1"])
        self.assertIsNotNone(options["allow"].match("127.0.0.1"))
        self.assertIsNotNone(options["allow"].match("unix"))
        self.assertIsNone(options["allow"].match("192.0.2.1"))
        self.assertIsNone(options["auth"])
        self.assertIsNone(options["metrics"])
        self.assertEqual((options["connect-timeout"], options["handshake-timeout"], options["tunnel-idle-timeout"],
                          options["idle-timeout"]), (10, 30, 900, 30))
        self.assertFalse(options["allow-local"])
        self.assertEqual(options["workers"], 1)

    def test_rules(self):
        """--block rules refuse destinations; --allow replaces the default clients."""
        options = parse("socks", "--block", "*.example.org", "--allow", "10.0.0.0/8").subOptions
        self.assertIsNotNone(options["rules"].match("www.example.org", 80))
        self.assertIsNotNone(options["allow"].match("10.1.2.3"))
        self.assertIsNone(options["allow"].match("127.0.0.1"))

    def test_auth_file(self):
        """--auth-file reads the users of the HTTP proxy's format."""
        path = self.mktemp()
        with open(path, "w") as file:
            file.write(USERS)
        options = parse("socks", "--auth-file", path).subOptions
        self.assertIsInstance(options["auth"], AuthFile)
        self.assertIn("alice", options["auth"].users)

    def test_bad_values(self):
        """Each bad value stops start-up with a message naming its option."""
        cases = [
            (["--connect-timeout", "soon"], "--connect-timeout"),
            (["--handshake-timeout", "0"], "--handshake-timeout"),
            (["--tunnel-idle-timeout", "-1"], "--tunnel-idle-timeout"),
            (["--block", "300.1.1.1/99"], "--block"),
            (["--allow", "nowhere/40"], "--allow"),
            (["--metrics", "nonsense:1"], "--metrics"),
            (["--listen", "nonsense:1"], "--listen"),
            (["--auth-file", "/nonexistent/users"], "--auth-file"),
            (["--workers", "many"], "--workers"),
            (["--workers", "2", "--listen", "unix:/tmp/x.sock"], "--listen"),
        ]
        for argv, option in cases:
            error = self.assertRaises(UsageError, parse, "socks", *argv)
            self.assertIn(option, str(error), argv)


class SystemdExampleTests(SynchronousTestCase):
    """
    The example options shipped for netproxy@socks.service.
    """

    def test_socks_env(self):
        """contrib/systemd/socks.env holds options the role takes (its users file put in place)."""
        from pathlib import Path

        env = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "socks.env"
        argv = env.read_text().split("NETPROXY_OPTIONS=", 1)[1].split()
        path = self.mktemp()
        with open(path, "w") as file:
            file.write(USERS)
        argv[argv.index("--auth-file") + 1] = path
        options = parse("socks", *argv).subOptions
        self.assertEqual(options["listen"], ["tcp:1080:interface=127.0.0.1"])
        self.assertEqual(options["metrics"], "tcp:9106:interface=127.0.0.1")
