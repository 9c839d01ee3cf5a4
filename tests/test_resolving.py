"""
Tests for L{netproxy.resolving}: looking a name up in both families, with a
deadline and cancellation, and the Happy Eyeballs order of its addresses.
(The race itself, through L{netproxy.dialing.connect_checked}, is tested in
C{tests.test_dialing}.)
"""

from ipaddress import ip_address

from twisted.internet import error as neterror
from twisted.internet.address import IPv4Address as IPv4Endpoint, IPv6Address as IPv6Endpoint
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from netproxy.dialing import connect_failure_reason


def _addresses(*texts):
    return [ip_address(text) for text in texts]


class ResolveAddressesTests(SynchronousTestCase):
    """
    L{resolve_addresses} looks a name up in both families with the reactor's name resolver.
    """

    def setUp(self):
        from twisted.internet.testing import MemoryReactorClock

        self.reactor = MemoryReactorClock()

    def resolve(self, names, host="host.test", timeout=5):
        from netproxy.resolving import resolve_addresses
        from netproxy.testing import FakeNameResolver

        self.reactor.installNameResolver(FakeNameResolver(names))
        return resolve_addresses(self.reactor, host, timeout)

    def test_both_families(self):
        """Every address comes back, IPv6 and IPv4, in the resolver's order."""
        d = self.resolve({"host.test": ["2001:db8::1", "192.0.2.1", "::1"]})
        self.assertEqual(self.successResultOf(d), _addresses("2001:db8::1", "192.0.2.1", "::1"))

    def test_ipv6_only(self):
        """A name with only an IPv6 address resolves (the IPv4-only lookup of old said host not found)."""
        self.assertEqual(self.successResultOf(self.resolve({"host.test": "::1"})), _addresses("::1"))

    def test_zone_kept(self):
        """A link-local address keeps its zone, which the connection needs."""
        [address] = self.successResultOf(self.resolve({"host.test": "fe80::1%eth0"}))
        self.assertEqual(address.scope_id, "eth0")

    def test_no_address(self):
        """A name with no address fails with DNSLookupError, which reads as host not found."""
        failure = self.failureResultOf(self.resolve({}), neterror.DNSLookupError)
        self.assertEqual(connect_failure_reason(failure), "host not found")

    def test_timeout(self):
        """A lookup still running after the timeout is cancelled and fails saying the lookup timed out."""
        from netproxy.resolving import LookupTimedOut

        lookup = Deferred()
        d = self.resolve({"host.test": lookup}, timeout=3)
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, LookupTimedOut)
        self.assertEqual(connect_failure_reason(failure), "name lookup timed out")
        self.assertTrue(lookup.called)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """Cancelling stops the lookup; an answer arriving later is dropped."""
        from netproxy.resolving import _Addresses

        receiver = _Addresses()
        receiver.done.cancel()
        receiver.addressResolved(IPv6Endpoint("TCP", "::1", 0))
        receiver.resolutionComplete()
        self.failureResultOf(receiver.done, CancelledError)

    def test_non_addresses_dropped(self):
        """Whatever a resolver hands over that is not an IP address is ignored."""
        from netproxy.resolving import _Addresses

        receiver = _Addresses()
        receiver.addressResolved(IPv4Endpoint("TCP", "not-an-address", 0))
        receiver.addressResolved(IPv4Endpoint("TCP", "192.0.2.1", 0))
        receiver.resolutionComplete()
        self.assertEqual(self.successResultOf(receiver.done), _addresses("192.0.2.1"))


class InterleavedTests(SynchronousTestCase):
    """
    L{interleaved} orders addresses the Happy Eyeballs way: families alternate, the first one first.
    """

    def test_ipv6_first(self):
        """IPv6 first when the resolver put it first, then alternating."""
        from netproxy.resolving import interleaved

        given = _addresses("2001:db8::1", "2001:db8::2", "2001:db8::3", "192.0.2.1", "192.0.2.2")
        self.assertEqual(interleaved(given),
                         _addresses("2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"))

    def test_ipv4_first(self):
        """IPv4 first when the resolver put it first."""
        from netproxy.resolving import interleaved

        given = _addresses("192.0.2.1", "192.0.2.2", "2001:db8::1")
        self.assertEqual(interleaved(given), _addresses("192.0.2.1", "2001:db8::1", "192.0.2.2"))

    def test_one_family(self):
        """One family keeps its order; nothing stays nothing."""
        from netproxy.resolving import interleaved

        given = _addresses("192.0.2.2", "192.0.2.1")
        self.assertEqual(interleaved(given), given)
        self.assertEqual(interleaved([]), [])


class ConnectAddressesTests(SynchronousTestCase):
    """
    L{connect_addresses} connects to one address directly, and races several in the interleaved order.
    """

    def setUp(self):
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.testing import MemoryReactorClock

        self.reactor = MemoryReactorClock()
        self.factory = Factory.forProtocol(Protocol)

    def dialled(self):
        return [client[:2] for client in self.reactor.tcpClients]

    def test_one_address(self):
        """One address is connected to at once, with the attempt's timeout."""
        from netproxy.resolving import connect_addresses

        connect_addresses(self.reactor, _addresses("2001:db8::1"), 80, self.factory, 7)
        self.assertEqual(self.reactor.tcpClients[0][:2] + self.reactor.tcpClients[0][3:4], ("2001:db8::1", 80, 7))

    def test_several_addresses(self):
        """Several addresses are tried one every 0.3 s, families alternating, and no more after the last."""
        from netproxy.resolving import connect_addresses

        connect_addresses(self.reactor, _addresses("2001:db8::1", "2001:db8::2", "192.0.2.1"), 80, self.factory, 7)
        self.assertEqual(self.dialled(), [("2001:db8::1", 80)])
        self.reactor.advance(0.3)
        self.assertEqual(self.dialled(), [("2001:db8::1", 80), ("192.0.2.1", 80)])
        self.reactor.advance(0.3)
        self.reactor.advance(0.3)
        self.assertEqual(self.dialled(), [("2001:db8::1", 80), ("192.0.2.1", 80), ("2001:db8::2", 80)])
