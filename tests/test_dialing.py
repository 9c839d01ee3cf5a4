"""
Tests for L{netproxy.dialing}: resolving, connecting, waiting with a
timeout, and the few words that say why a connection failed.
"""

from ipaddress import ip_address

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.dialing import connect, connect_error, connect_failure_reason, resolve, within
from netproxy.errors import Blocked, ClientError, LocalDestination
from netproxy.testing import complete_connection, fail_connection
from tests.address_helpers import THIS_HOST, name_resolver, unbracketed


class _Resolver:
    """
    A reactor stand-in whose C{resolve} answers from a table and records the
    names asked for.
    """

    def __init__(self, table):
        self.table = table
        self.asked = []

    def resolve(self, name):
        self.asked.append(name)
        if name in self.table:
            return succeed(self.table[name])
        return fail(neterror.DNSLookupError(name))


class _Endpoint:
    """
    An endpoint stand-in whose C{connect} returns a given result.
    """

    def __init__(self, result):
        self.result = result
        self.factories = []

    def connect(self, factory):
        self.factories.append(factory)
        return self.result


class ConnectFailureReasonTests(SynchronousTestCase):
    """
    L{connect_failure_reason} says in a few words why a connection failed.
    """

    def assertReason(self, exception, text):
        self.assertEqual(connect_failure_reason(Failure(exception)), text)

    def test_refused(self):
        """A refused connection is "connection refused"."""
        self.assertReason(neterror.ConnectionRefusedError(), "connection refused")

    def test_timeout(self):
        """A connect timeout is "timed out"."""
        self.assertReason(neterror.TimeoutError(), "timed out")

    def test_tcp_timed_out(self):
        """A TCP-level timeout is "timed out"."""
        self.assertReason(neterror.TCPTimedOutError(), "timed out")

    def test_cancelled(self):
        """A cancelled attempt (as an endpoint timeout cancels it) is "timed out"."""
        self.assertReason(CancelledError(), "timed out")

    def test_deferred_timeout(self):
        """A Deferred.addTimeout timeout is "timed out"."""
        self.assertReason(DeferredTimeout(), "timed out")

    def test_dns(self):
        """A failed name lookup is "host not found"."""
        self.assertReason(neterror.DNSLookupError("nowhere.invalid"), "host not found")

    def test_no_route(self):
        """An unreachable network is "no route to host"."""
        self.assertReason(neterror.NoRouteError(), "no route to host")

    def test_other_error_message(self):
        """Any other error is described by its own message."""
        self.assertReason(ValueError("address family not supported"), "address family not supported")

    def test_other_connect_error(self):
        """A connect error with no short text falls back to its message."""
        error = neterror.ConnectionLost("peer went away")
        self.assertEqual(connect_failure_reason(Failure(error)), Failure(error).getErrorMessage())


class WithinTests(SynchronousTestCase):
    """
    L{within} waits for a Deferred no longer than a timeout.
    """

    def test_result_in_time(self):
        """A result that comes before the timeout is returned."""
        clock = Clock()
        waited = Deferred()
        d = Deferred.fromCoroutine(within(waited, 5, clock, "too slow"))
        clock.advance(4)
        waited.callback("answer")
        self.assertEqual(self.successResultOf(d), "answer")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_waits_until_timeout(self):
        """Nothing happens before the timeout has passed."""
        clock = Clock()
        d = Deferred.fromCoroutine(within(Deferred(), 5, clock, "too slow"))
        clock.advance(4.9)
        self.assertNoResult(d)

    def test_timeout(self):
        """After the timeout, ClientError with the given message is raised."""
        clock = Clock()
        d = Deferred.fromCoroutine(within(Deferred(), 5, clock, "no reply within 5 seconds"))
        clock.advance(5)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "no reply within 5 seconds")

    def test_timeout_cancels(self):
        """The waited-for Deferred is cancelled when the time runs out."""
        clock = Clock()
        cancelled = []
        waited = Deferred(cancelled.append)
        d = Deferred.fromCoroutine(within(waited, 1, clock, "late"))
        clock.advance(1)
        self.failureResultOf(d, ClientError)
        self.assertEqual(cancelled, [waited])

    def test_other_errors_pass(self):
        """An error of the waited-for Deferred is raised as it is."""
        clock = Clock()
        waited = Deferred()
        d = Deferred.fromCoroutine(within(waited, 5, clock, "late"))
        waited.errback(ClientError("connection closed after 0 of 3 bytes"))
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "connection closed after 0 of 3 bytes")


class ResolveTests(SynchronousTestCase):
    """
    L{resolve} turns a host into an IP address.
    """

    def test_ipv4_literal(self):
        """An IPv4 literal is returned unchanged, without a lookup."""
        reactor = _Resolver({})
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(resolve(reactor, "127.0.0.1"))), "127.0.0.1")
        self.assertEqual(reactor.asked, [])

    def test_ipv6_literal(self):
        """An IPv6 literal is returned unchanged, without a lookup."""
        reactor = _Resolver({})
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(resolve(reactor, "::1"))), "::1")
        self.assertEqual(reactor.asked, [])

    def test_name(self):
        """A host name is looked up with the reactor's resolver."""
        reactor = _Resolver({"localhost": "127.0.0.1"})
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(resolve(reactor, "localhost"))), "127.0.0.1")
        self.assertEqual(reactor.asked, ["localhost"])

    def test_unknown_name(self):
        """A name that cannot be resolved raises ClientError naming it."""
        d = Deferred.fromCoroutine(resolve(_Resolver({}), "nowhere.invalid"))
        failure = self.failureResultOf(d, ClientError)
        self.assertTrue(str(failure.value).startswith("could not resolve nowhere.invalid: "), str(failure.value))


class ConnectTests(SynchronousTestCase):
    """
    L{connect} connects an endpoint or says why it could not.
    """

    def test_connected(self):
        """The connected protocol is returned."""
        protocol = Protocol()
        endpoint = _Endpoint(succeed(protocol))
        factory = Factory.forProtocol(Protocol)
        d = Deferred.fromCoroutine(connect(endpoint, factory, "127.0.0.1:8888"))
        self.assertIs(self.successResultOf(d), protocol)
        self.assertEqual(endpoint.factories, [factory])

    def test_refused(self):
        """A refused connection raises ClientError naming the destination and the reason."""
        endpoint = _Endpoint(fail(neterror.ConnectionRefusedError()))
        d = Deferred.fromCoroutine(connect(endpoint, Factory.forProtocol(Protocol), "127.0.0.1:8888"))
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "could not connect to 127.0.0.1:8888: connection refused")

    def test_unknown_host(self):
        """A failed lookup raises ClientError saying the host was not found."""
        endpoint = _Endpoint(fail(neterror.DNSLookupError("nowhere.invalid")))
        d = Deferred.fromCoroutine(connect(endpoint, Factory.forProtocol(Protocol), "nowhere.invalid:80"))
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "could not connect to nowhere.invalid:80: host not found")


class ConnectCheckedTests(SynchronousTestCase):
    """
    connect_checked resolves names, checks the address, and connects to the checked address.
    """

    def setUp(self):
        from netproxy.acl import RuleSet, parse_rule
        from netproxy.testing import UDPMemoryReactor

        self.reactor = UDPMemoryReactor(names={"blocked.test": "10.0.0.1", "fine.test": "10.0.0.2"})
        self.rules = RuleSet([parse_rule("10.0.0.1")])

    def test_blocked_address_behind_name(self):
        """A name resolving to a blocked address fails with Blocked and makes no connection."""
        from netproxy.dialing import connect_checked
        from netproxy.errors import Blocked

        d = connect_checked(self.reactor, self.rules, "blocked.test", 80, Factory.forProtocol(Protocol), 5)
        failure = self.failureResultOf(d, Blocked)
        self.assertIn("10.0.0.1", str(failure.value))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_connects_to_checked_address(self):
        """An allowed name is connected to by the address that was checked, not by name."""
        from netproxy.dialing import connect_checked

        connect_checked(self.reactor, self.rules, "fine.test", 80, Factory.forProtocol(Protocol), 5)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.2", 80))

    def test_literal_not_resolved(self):
        """An IP literal is connected to directly, without a lookup."""
        from netproxy.dialing import connect_checked

        connect_checked(self.reactor, self.rules, "10.0.0.3", 81, Factory.forProtocol(Protocol), 5)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.3", 81))

    def test_literal_checked(self):
        """An IP literal is checked too, not only names."""
        from netproxy.dialing import connect_checked

        d = connect_checked(self.reactor, self.rules, "10.0.0.1", 80, Factory.forProtocol(Protocol), 5)
        self.assertEqual(str(self.failureResultOf(d, Blocked).value), "is 10.0.0.1, blocked by rule 10.0.0.1")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_numeric_form_read_not_resolved(self):
        """A numeric IPv4 form is read as inet_aton reads it, checked, and connected to as that address."""
        from netproxy.dialing import connect_checked

        d = connect_checked(self.reactor, self.rules, "0xa.1", 80, Factory.forProtocol(Protocol), 5)
        self.failureResultOf(d, Blocked)
        connect_checked(self.reactor, self.rules, "167772162", 80, Factory.forProtocol(Protocol), 5)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.2", 80))


class ThisHostTests(SynchronousTestCase):
    """
    connect_checked matches the address actually connected to: every spelling of this host, names that
    resolve there included, is matched by a loopback rule, and refused when local destinations are.
    """

    def setUp(self):
        from netproxy.testing import UDPMemoryReactor

        self.reactor = UDPMemoryReactor()
        self.reactor.installNameResolver(name_resolver())
        self.factory = Factory.forProtocol(Protocol)

    def connect(self, host, rules=(), local=None):
        from netproxy.acl import RuleSet, parse_rule
        from netproxy.dialing import connect_checked

        rules = RuleSet([parse_rule(rule) for rule in rules])
        return connect_checked(self.reactor, rules, unbracketed(host), 8080, self.factory, 5, local)

    def test_loopback_rule_matches_every_spelling(self):
        """A 127.0.0.0/8 rule blocks every spelling of this host, without a connection."""
        for host in THIS_HOST:
            failure = self.failureResultOf(self.connect(host, ["127.0.0.0/8"]), Blocked)
            self.assertNotIsInstance(failure.value, LocalDestination)
            self.assertIn("blocked by rule 127.0.0.0/8", str(failure.value), host)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_ipv6_loopback_rule_matches_this_host(self):
        """A ::1 rule blocks 0.0.0.0 and 127.0.0.1 too: this host's loopback in either family."""
        for host in ("0.0.0.0", "0x0", "[::]", "127.0.0.1", "localhost.test"):
            self.failureResultOf(self.connect(host, ["::1"]), Blocked)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_this_host_named_in_error(self):
        """The error says which address was matched, and that it is this host."""
        failure = self.failureResultOf(self.connect("0x0", ["127.0.0.0/8"]), Blocked)
        self.assertEqual(str(failure.value), "is 0.0.0.0 (this host), blocked by rule 127.0.0.0/8")
        failure = self.failureResultOf(self.connect("zero.test", ["127.0.0.0/8"]), Blocked)
        self.assertEqual(str(failure.value), "resolves to 0.0.0.0 (this host), blocked by rule 127.0.0.0/8")

    def test_port_rule(self):
        """A loopback rule with a port matches this host on that port only."""
        self.failureResultOf(self.connect("0.0.0.0", ["127.0.0.1:8080"]), Blocked)
        self.connect("0.0.0.0", ["127.0.0.1:8081"])
        self.assertEqual(self.reactor.tcpClients[0][:2], ("0.0.0.0", 8080))

    def test_local_refused(self):
        """With local destinations refused, every spelling of this host is refused, without a connection."""
        from netproxy.this_host import LocalDestinations

        local = LocalDestinations(lambda: [])
        for host in THIS_HOST:
            failure = self.failureResultOf(self.connect(host, local=local), LocalDestination)
            self.assertIn(failure.value.kind, ("this host", "loopback"), host)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_own_address_refused(self):
        """This host's own interface addresses are refused, however spelled, names included."""
        from netproxy.this_host import LocalDestinations

        local = LocalDestinations(lambda: [ip_address("192.0.2.80")])
        for host in ("192.0.2.80", "[::ffff:192.0.2.80]", "3221226064", "elsewhere.test"):
            failure = self.failureResultOf(self.connect(host, local=local), LocalDestination)
            self.assertEqual(failure.value.kind, "own", host)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_link_local_refused(self):
        """Link-local destinations (the cloud metadata service) are refused."""
        from netproxy.this_host import LocalDestinations

        local = LocalDestinations(lambda: [])
        for host in ("169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]", "0xa9fea9fe"):
            failure = self.failureResultOf(self.connect(host, local=local), LocalDestination)
            self.assertEqual(failure.value.kind, "link-local", host)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_rules_before_local(self):
        """A rule that matches is named even when the destination is local too."""
        from netproxy.this_host import LocalDestinations

        failure = self.failureResultOf(self.connect("0", ["127.0.0.0/8"], LocalDestinations(lambda: [])), Blocked)
        self.assertNotIsInstance(failure.value, LocalDestination)

    def test_elsewhere_connects(self):
        """A destination elsewhere passes both checks and is connected to by its address."""
        from netproxy.this_host import LocalDestinations

        self.connect("elsewhere.test", ["127.0.0.0/8"], LocalDestinations(lambda: []))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.80", 8080))

    def test_allowed_this_host_connects(self):
        """Without rules and with local destinations allowed, this host is connected to."""
        self.connect("[::ffff:127.0.0.1]")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 8080))


class ConnectErrorTests(SynchronousTestCase):
    """
    L{connect_error} says what a proxy answers a failed connection with.
    """

    def test_local(self):
        """A local destination is 403, naming the reason and --allow-local."""
        error = connect_error(Failure(LocalDestination("0.0.0.0", "this host", False)), "0x0:8080")
        self.assertEqual(error.status, 403)
        self.assertEqual(str(error), "destination 0x0:8080 is this host: 0.0.0.0 is this host itself "
                                     "(0.0.0.0/8 and :: connect to it) (--allow-local allows it)")

    def test_blocked(self):
        """A destination whose address is blocked is 403, naming the rule."""
        error = connect_error(Failure(Blocked("resolves to 10.0.0.1, blocked by rule 10.0.0.0/8")), "h:80")
        self.assertEqual((error.status, str(error)),
                         (403, "destination h:80 is blocked: it resolves to 10.0.0.1, blocked by rule 10.0.0.0/8"))

    def test_timed_out(self):
        """A connection attempt that timed out is 504."""
        error = connect_error(Failure(neterror.TimeoutError()), "h:80")
        self.assertEqual((error.status, str(error)), (504, "could not connect to h:80: timed out"))

    def test_refused(self):
        """A refused connection is 502, saying so."""
        error = connect_error(Failure(neterror.ConnectionRefusedError()), "h:80")
        self.assertEqual((error.status, str(error)), (502, "could not connect to h:80: connection refused"))


def _addresses(*texts):
    return [ip_address(text) for text in texts]


class DualStackTests(SynchronousTestCase):
    """
    connect_checked with names resolving to IPv6, or to both families: each address is checked, refused ones are
    never connected to, and the others are raced.
    """

    def setUp(self):
        from twisted.internet.testing import MemoryReactorClock

        from netproxy.testing import FakeNameResolver

        self.reactor = MemoryReactorClock()
        self.names = {
            "six.test": "2001:db8::1",
            "dual.test": ["2001:db8::1", "192.0.2.1"],
            "loopback6.test": "::1",
            "mixed.test": ["::1", "192.0.2.1"],
            "blocked.test": ["10.0.0.1", "2001:db8::1"],
            "refused.test": ["10.0.0.1", "::1"],
            "link.test": "fe80::1%eth0",
            "own.test": ["2001:db8::5"],
            "mapped.test": "::ffff:127.0.0.1",
        }
        self.reactor.installNameResolver(FakeNameResolver(self.names))
        self.factory = Factory.forProtocol(Protocol)

    def connect(self, host, rules=(), local=True):
        from netproxy.acl import RuleSet, parse_rule
        from netproxy.dialing import connect_checked
        from netproxy.this_host import LocalDestinations

        refused = LocalDestinations(lambda: [ip_address("2001:db8::5")]) if local else None
        rules = RuleSet([parse_rule(rule) for rule in rules])
        return connect_checked(self.reactor, rules, host, 443, self.factory, 5, refused)

    def dialled(self):
        return [client[0] for client in self.reactor.tcpClients]

    def test_ipv6_name(self):
        """A name with only an IPv6 address is connected to by that address."""
        self.connect("six.test")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("2001:db8::1", 443))

    def test_ipv6_loopback_name_refused(self):
        """A name resolving to ::1 only is refused as local, naming the address, and never connected to."""
        failure = self.failureResultOf(self.connect("loopback6.test"), LocalDestination)
        self.assertEqual(str(failure.value), "it resolves to ::1, a loopback address")
        self.assertEqual(self.dialled(), [])

    def test_ipv6_loopback_name_allowed_locally(self):
        """With local destinations allowed, the same name is connected to ::1."""
        self.connect("loopback6.test", local=False)
        self.assertEqual(self.dialled(), ["::1"])

    def test_mapped_answer(self):
        """An IPv4-mapped answer is this host's loopback too."""
        failure = self.failureResultOf(self.connect("mapped.test"), LocalDestination)
        self.assertEqual(failure.value.kind, "loopback")
        self.failureResultOf(self.connect("mapped.test", ["127.0.0.1"], local=False), Blocked)
        self.assertEqual(self.dialled(), [])

    def test_link_local_with_zone_refused(self):
        """A link-local answer with a zone is link-local."""
        failure = self.failureResultOf(self.connect("link.test"), LocalDestination)
        self.assertEqual((failure.value.kind, failure.value.address), ("link-local", "fe80::1"))

    def test_own_ipv6_address_refused(self):
        """One of this host's own IPv6 addresses is refused behind a name."""
        failure = self.failureResultOf(self.connect("own.test"), LocalDestination)
        self.assertEqual(failure.value.kind, "own")
        self.assertEqual(self.dialled(), [])

    def test_local_address_left_out(self):
        """Of a name's addresses, the local one is never tried; the other is connected to."""
        self.connect("mixed.test")
        self.reactor.advance(1)
        self.assertEqual(self.dialled(), ["192.0.2.1"])

    def test_blocked_address_left_out(self):
        """Of a name's addresses, the blocked one is never tried; the other is connected to."""
        self.connect("blocked.test", ["10.0.0.0/8"])
        self.reactor.advance(1)
        self.assertEqual(self.dialled(), ["2001:db8::1"])

    def test_ipv6_rule_leaves_ipv4(self):
        """An IPv6 rule blocks a name's IPv6 address, not its IPv4 one."""
        self.connect("dual.test", ["2001:db8::/32"])
        self.reactor.advance(1)
        self.assertEqual(self.dialled(), ["192.0.2.1"])

    def test_every_address_refused(self):
        """When every address is refused, the first refusal is the answer."""
        failure = self.failureResultOf(self.connect("refused.test", ["10.0.0.0/8"]), Blocked)
        self.assertEqual(str(failure.value), "resolves to 10.0.0.1, blocked by rule 10.0.0.0/8")
        self.assertEqual(self.dialled(), [])

    def test_happy_eyeballs(self):
        """The second family is tried 0.3 s after the first, without waiting for it; the winner cancels the other."""
        d = self.connect("dual.test")
        self.assertEqual(self.dialled(), ["2001:db8::1"])
        self.reactor.advance(0.3)
        self.assertEqual(self.dialled(), ["2001:db8::1", "192.0.2.1"])
        wrapper, _ = complete_connection(self.reactor, index=1)
        self.assertIs(self.successResultOf(d), wrapper._wrappedProtocol)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.reactor.advance(10)
        self.assertEqual(len(self.dialled()), 2)

    def test_all_attempts_fail(self):
        """When every address fails, the error is an attempt's, and reads as such."""
        d = self.connect("dual.test")
        self.reactor.advance(0.3)
        fail_connection(self.reactor, neterror.ConnectionRefusedError(), index=0)
        self.assertNoResult(d)
        fail_connection(self.reactor, neterror.ConnectionRefusedError(), index=1)
        # The endpoint waits for its next turn to see that no address is left.
        self.reactor.advance(0.3)
        self.assertEqual(connect_failure_reason(self.failureResultOf(d)), "connection refused")

    def test_cancel_during_attempts(self):
        """Cancelling while attempts run stops every one of them."""
        d = self.connect("dual.test")
        self.reactor.advance(0.3)
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(all(connector.stoppedConnecting for connector in self.reactor.connectors))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
