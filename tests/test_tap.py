"""
Tests for L{netproxy.tap}: the role list and the help texts.  Each role's
options are tested beside them (L{tests.message.test_options},
L{tests.http.test_options}).  The message roles' services are tested in
L{tests.message.test_services}.
"""

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.testing import UDPMemoryReactor


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def start(builder, options):
    reactor = UDPMemoryReactor()
    service = builder(options.subOptions, reactor)
    service.privilegedStartService()
    service.startService()
    return reactor, service


class RoleListTests(SynchronousTestCase):
    """
    The roles C{twistd netproxy} offers.
    """

    def test_roles_listed_in_help(self):
        """twistd netproxy --help lists every role with its description."""
        text = " ".join(str(tap.Options()).split())
        roles = {name: description for name, _, _, description in tap.Options.subCommands}
        self.assertEqual(sorted(roles), ["ack", "client", "http", "relay", "reverse", "server", "socks", "upper"])
        for role, description in roles.items():
            self.assertIn(f"{role} {description}", text)

    def test_role_required(self):
        """Naming no role is a usage error that lists the roles."""
        error = self.assertRaises(UsageError, parse)
        self.assertIn("relay", str(error))


class ClientRoleTests(SynchronousTestCase):
    """
    The client role.
    """

    def test_client_options_shared_with_command(self):
        """The client role parses the same subcommands as netproxy-client."""
        options = parse("client", "upper", "127.0.0.1", "12000", "hi", "--udp")
        sub = options.subOptions
        self.assertEqual(sub.subCommand, "upper")
        self.assertEqual((sub.subOptions["host"], sub.subOptions["port"], sub.subOptions["text"]), ("127.0.0.1", 12000, "hi"))
        self.assertTrue(sub.subOptions["udp"])


class HelpTextTests(SynchronousTestCase):
    """
    The help texts of the roles that twistd serves.
    """

    def test_no_stray_spacing(self):
        """No option's description holds a line break or a run of spaces (as an indented docstring would)."""
        for name, _, options_class, _ in tap.Options.subCommands:
            if name == "client":
                continue
            for option, text in options_class().docs.items():
                self.assertEqual(text.strip(), " ".join(text.split()), f"{name} --{option}")
