"""
Tests for L{netproxy.this_host}: which destinations are on this host or
its link, with this host's interface addresses injected.
"""

import sys
from ipaddress import ip_address

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netproxy.acl import RuleSet, host_address, parse_rule
from netproxy.errors import LocalDestination
from netproxy.this_host import LocalDestinations, destination_aliases, interface_addresses, is_this_host
from tests.address_helpers import THIS_HOST, unbracketed


def addresses(*texts):
    """
    :returns: a reader of interface addresses answering C{texts}.
    """
    return lambda: [ip_address(text) for text in texts]


class DestinationAliasesTests(SynchronousTestCase):
    """
    L{destination_aliases} gives every address rules must see for a destination.
    """

    def test_spellings_of_this_host_match_loopback_rule(self):
        """Every spelling of this host that is an address has an alias a 127.0.0.0/8 rule matches."""
        rules = RuleSet([parse_rule("127.0.0.0/8")])
        for host in THIS_HOST:
            address = host_address(unbracketed(host))
            if address is not None:
                self.assertTrue([alias for alias in destination_aliases(address) if rules.match(str(alias))], host)

    def test_this_host_aliases_loopback(self):
        """0.0.0.0/8 and :: are seen as 127.0.0.1 and ::1 as well as themselves."""
        for text in ("0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "::0.0.0.2"):
            aliases = destination_aliases(ip_address(text))
            self.assertIn(ip_address("127.0.0.1"), aliases, text)
            self.assertIn(ip_address("::1"), aliases, text)
            self.assertTrue(any(is_this_host(alias) for alias in aliases), text)

    def test_loopback_in_both_families(self):
        """127.0.0.1 and ::1 are each seen as the other; other loopback addresses as themselves."""
        self.assertEqual(destination_aliases(ip_address("::1")), (ip_address("::1"), ip_address("127.0.0.1")))
        self.assertEqual(destination_aliases(ip_address("127.0.0.1")),
                         (ip_address("127.0.0.1"), ip_address("::1")))
        self.assertEqual(destination_aliases(ip_address("127.0.0.5")), (ip_address("127.0.0.5"),))

    def test_compatible_and_zone(self):
        """An IPv4-compatible address is seen as its IPv4 address; a zone is dropped."""
        self.assertEqual(destination_aliases(ip_address("::10.0.0.1")),
                         (ip_address("::a00:1"), ip_address("10.0.0.1")))
        self.assertEqual(destination_aliases(ip_address("fe80::1%eth0")), (ip_address("fe80::1"),))

    def test_elsewhere(self):
        """An address elsewhere is seen only as itself."""
        self.assertEqual(destination_aliases(ip_address("192.0.2.1")), (ip_address("192.0.2.1"),))
        self.assertEqual(destination_aliases(ip_address("2001:db8::1")), (ip_address("2001:db8::1"),))
        self.assertFalse(is_this_host(ip_address("1.0.0.0")))


class LocalDestinationsTests(SynchronousTestCase):
    """
    L{LocalDestinations.kind} says which kind of local address a destination is.
    """

    def setUp(self):
        self.local = LocalDestinations(addresses("192.0.2.7", "2001:db8::7"))

    def assertKind(self, text, kind):
        self.assertEqual(self.local.kind(ip_address(text)), kind, text)

    def test_this_host(self):
        """0.0.0.0/8 and :: are this host, in every form."""
        for text in ("0.0.0.0", "0.255.255.255", "::", "::ffff:0.0.0.0", "::0.0.0.3"):
            self.assertKind(text, "this host")

    def test_loopback(self):
        """127.0.0.0/8 and ::1 are loopback, mapped and compatible forms too."""
        for text in ("127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "::1%lo"):
            self.assertKind(text, "loopback")

    def test_link_local(self):
        """169.254.0.0/16 and fe80::/10 are link-local (the cloud metadata service lives there)."""
        for text in ("169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "fe80::1%eth0", "febf::1"):
            self.assertKind(text, "link-local")

    def test_own_addresses(self):
        """This host's interface addresses are its own, in their mapped and compatible forms too."""
        for text in ("192.0.2.7", "::ffff:192.0.2.7", "::192.0.2.7", "2001:db8::7"):
            self.assertKind(text, "own")

    def test_elsewhere(self):
        """Other addresses are not local."""
        for text in ("192.0.2.8", "1.0.0.0", "10.0.0.1", "2001:db8::8", "fec0::1", "::ffff:8.8.8.8"):
            self.assertKind(text, None)

    def test_kinds_have_texts(self):
        """Every kind is one L{LocalDestination} has a text for."""
        for text in ("0.0.0.0", "127.0.0.1", "169.254.0.1", "192.0.2.7"):
            kind = self.local.kind(ip_address(text))
            self.assertIn(kind, LocalDestination.KINDS)

    def test_reload(self):
        """Reloading reads the interface addresses again."""
        found = [["192.0.2.7"], ["192.0.2.9"]]
        local = LocalDestinations(lambda: [ip_address(text) for text in found.pop(0)])
        self.assertTrue(local.reload())
        self.assertEqual(local.kind(ip_address("192.0.2.7")), None)
        self.assertEqual(local.kind(ip_address("192.0.2.9")), "own")

    def test_unreadable_keeps_known(self):
        """When the addresses cannot be read, those known stay, and a warning says so."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        answers = [[ip_address("192.0.2.7")], OSError("no getifaddrs")]

        def read():
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        local = LocalDestinations(read)
        self.assertFalse(local.reload())
        self.assertEqual(local.kind(ip_address("192.0.2.7")), "own")
        [warning] = [event for event in events if event["log_level"] == LogLevel.warn]
        self.assertIn("no getifaddrs", warning["reason"])

    def test_unreadable_at_start(self):
        """Without interface addresses, the fixed networks are still refused."""
        def read():
            raise OSError("unsupported")

        local = LocalDestinations(read)
        self.assertEqual(local.own, frozenset())
        self.assertEqual(local.kind(ip_address("127.0.0.1")), "loopback")


class InterfaceAddressesTests(SynchronousTestCase):
    """
    L{interface_addresses} reads this host's addresses from the system.
    """

    def test_loopback_found(self):
        """On Linux, the loopback interface's 127.0.0.1 is among them."""
        if not sys.platform.startswith("linux"):
            raise SkipTest("getifaddrs layout checked on Linux")
        found = interface_addresses()
        self.assertIn(ip_address("127.0.0.1"), found)
        self.assertTrue(all(address.version in (4, 6) for address in found))
