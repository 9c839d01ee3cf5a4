"""
Tests for L{netproxy.http.login_throttle}: failed logins counted per client
address on a clock, checks run one at a time per address with a slot kept
for clean addresses, and a bounded memory of addresses.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.login_throttle import BURST, CHECKS, CLIENTS, FORGIVE, LoginThrottle, client_key


class HeldChecks:
    """
    A C{run_blocking} that holds each check until the test ends it.
    """

    def __init__(self):
        self.started = []

    def __call__(self, function, *args):
        deferred = Deferred()
        self.started.append((deferred, args))
        return deferred

    def who(self):
        """
        :returns: the first argument of each check started, in order.
        """
        return [args[0] for _, args in self.started]

    def end(self, index=0, result=False):
        """
        End the check started C{index}-th (of those still held) with C{result}.
        """
        deferred, _ = self.started.pop(index)
        deferred.callback(result)


class ClientKeyTests(SynchronousTestCase):
    """
    Failed logins are counted per IPv4 address, per IPv6 /64, and for Unix
    socket peers together.
    """

    def test_ipv4(self):
        """An IPv4 client is counted under its address, whatever its port."""
        self.assertEqual(client_key(IPv4Address("TCP", "192.0.2.7", 4000)), "192.0.2.7")

    def test_ipv6_network(self):
        """IPv6 clients of the same /64 are counted together, another /64 apart; a zone is ignored."""
        first = client_key(IPv6Address("TCP", "2001:db8:1:2::7", 4000))
        self.assertEqual(first, "2001:db8:1:2::/64")
        self.assertEqual(client_key(IPv6Address("TCP", "2001:db8:1:2:ffff::1", 4000)), first)
        self.assertNotEqual(client_key(IPv6Address("TCP", "2001:db8:1:3::7", 4000)), first)
        self.assertEqual(client_key(IPv6Address("TCP", "fe80::1%eth0", 4000)), "fe80::/64")

    def test_ipv4_mapped(self):
        """An IPv4-mapped IPv6 client is counted as its IPv4 address."""
        self.assertEqual(client_key(IPv6Address("TCP", "::ffff:192.0.2.7", 4000)), "192.0.2.7")

    def test_unix(self):
        """Unix socket peers are counted together."""
        self.assertEqual(client_key(UNIXAddress(None)), "unix")
        self.assertEqual(client_key(UNIXAddress(b"/run/x.sock")), "unix")


class ThrottleTestCase(SynchronousTestCase):
    """
    A L{LoginThrottle} on a L{Clock}, its checks held until the test ends
    them.
    """

    def setUp(self):
        self.clock = Clock()
        self.checks = HeldChecks()
        self.throttle = LoginThrottle(self.clock, self.checks, burst=3, forgive=10.0, checks=3, clients=4)

    def fail_logins(self, client, count):
        """
        Count C{count} failed logins for C{client}.
        """
        for _ in range(count):
            self.throttle.failed(client)


class BudgetTests(ThrottleTestCase):
    """
    After C{burst} failures an address must wait, one failure forgiven per
    C{forgive} seconds; checks under way count as failures.
    """

    def test_defaults(self):
        """By default: 10 failures, one forgiven every 6 s, 4 checks at once, 4,096 addresses remembered."""
        self.assertEqual((BURST, FORGIVE, CHECKS, CLIENTS), (10, 6.0, 4, 4096))
        throttle = LoginThrottle(self.clock, self.checks)
        self.assertEqual((throttle.burst, throttle.forgive, throttle._checks, throttle._clients),
                         (BURST, FORGIVE, CHECKS, CLIENTS))

    def test_burst_then_wait(self):
        """Up to the burst an address may try; then it waits until one failure is forgiven."""
        self.fail_logins("192.0.2.1", 2)
        self.assertEqual(self.throttle.wait("192.0.2.1"), 0)
        self.throttle.failed("192.0.2.1")
        self.assertEqual(self.throttle.wait("192.0.2.1"), 10.0)
        self.clock.advance(9)
        self.assertAlmostEqual(self.throttle.wait("192.0.2.1"), 1.0)
        self.clock.advance(1)
        self.assertEqual(self.throttle.wait("192.0.2.1"), 0)
        self.assertEqual(self.throttle.wait("192.0.2.2"), 0)

    def test_pending_checks_count(self):
        """Checks waiting or running count as failures: many connections at once get no more tries."""
        for _ in range(3):
            self.assertEqual(self.throttle.wait("192.0.2.1"), 0)
            self.throttle.run("192.0.2.1", lambda: False)
        self.assertGreater(self.throttle.wait("192.0.2.1"), 0)
        self.checks.end()
        self.throttle.failed("192.0.2.1")
        self.assertGreater(self.throttle.wait("192.0.2.1"), 0)

    def test_success_costs_nothing(self):
        """A check that ends without a failure counted leaves no trace of the address."""
        ran = self.throttle.run("192.0.2.1", lambda: True)
        self.checks.end(result=True)
        self.assertTrue(self.successResultOf(ran))
        self.assertEqual((len(self.throttle), self.throttle.wait("192.0.2.1")), (0, 0))

    def test_warned_once(self):
        """The refusal of an address is logged once at warn, again only after it was let through."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.fail_logins("192.0.2.1", 3)
        for _ in range(5):
            self.throttle.wait("192.0.2.1")
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(formatEvent(event), "192.0.2.1: too many failed logins (3 recent, 0 being checked); its "
                                             "further tries are refused without a check, one more allowed every 10.0 s")
        self.clock.advance(10)
        self.throttle.wait("192.0.2.1")
        self.throttle.failed("192.0.2.1")
        self.throttle.wait("192.0.2.1")
        self.assertEqual(len(events), 2)


class SchedulingTests(ThrottleTestCase):
    """
    One check at a time per address; the last slot is kept for addresses
    without recent failures, which go first.
    """

    def test_one_at_a_time_per_address(self):
        """An address's second check waits for its first to end."""
        self.throttle.run("192.0.2.1", lambda: False, "first")
        self.throttle.run("192.0.2.1", lambda: False, "second")
        self.assertEqual(self.checks.who(), ["first"])
        self.checks.end()
        self.assertEqual(self.checks.who(), ["second"])

    def test_results_delivered(self):
        """Each check's result, or failure, goes to its caller, and frees its slot."""
        good = self.throttle.run("192.0.2.1", lambda: True)
        broken = self.throttle.run("192.0.2.2", lambda: True)
        self.checks.end(result=True)
        deferred, _ = self.checks.started.pop()
        deferred.errback(RuntimeError("boom"))
        self.assertTrue(self.successResultOf(good))
        self.failureResultOf(broken, RuntimeError)
        self.assertEqual((self.throttle._running, len(self.throttle)), (0, 0))

    def test_slot_kept_for_clean_addresses(self):
        """Addresses with failures take at most all slots but one; a clean address's check starts at once."""
        for attacker in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            self.throttle.failed(attacker)
            self.throttle.run(attacker, lambda: False, attacker)
        self.assertEqual(self.checks.who(), ["192.0.2.1", "192.0.2.2"])
        self.throttle.run("198.51.100.1", lambda: True, "clean")
        self.assertEqual(self.checks.who(), ["192.0.2.1", "192.0.2.2", "clean"])

    def test_fewest_failures_first(self):
        """When a slot frees, the waiting address with the fewest failures goes first, whatever the order of arrival."""
        self.fail_logins("192.0.2.1", 2)
        self.throttle.failed("192.0.2.2")
        for client in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "192.0.2.1", "192.0.2.2"):
            self.throttle.run(client, lambda: False, client)
        self.assertEqual(self.checks.who(), ["198.51.100.1", "198.51.100.2", "198.51.100.3"])
        self.checks.end(0)
        self.assertEqual(self.checks.who(), ["198.51.100.2", "198.51.100.3", "192.0.2.2"])
        self.checks.end(0)
        self.assertEqual(self.checks.who(), ["198.51.100.3", "192.0.2.2", "192.0.2.1"])

    def test_unwanted_not_run(self):
        """A waiting check no longer wanted when its turn comes is not run: its result is None, and it costs nothing."""
        self.throttle.run("192.0.2.1", lambda: False, "first")
        gone = self.throttle.run("192.0.2.1", lambda: False, "gone", wanted=lambda: False)
        self.throttle.run("192.0.2.1", lambda: False, "third", wanted=lambda: True)
        self.checks.end()
        self.assertIsNone(self.successResultOf(gone))
        self.assertEqual(self.checks.who(), ["third"])
        self.checks.end(result=True)
        self.assertEqual(len(self.throttle), 0)

    def test_checks_ending_at_once(self):
        """Checks that end as soon as they start (run synchronously) all run, in turn."""
        throttle = LoginThrottle(self.clock, maybeDeferred, checks=2)
        results = [throttle.run("192.0.2.1", lambda n=n: n) for n in range(5)]
        self.assertEqual([self.successResultOf(result) for result in results], list(range(5)))
        self.assertEqual(throttle._running, 0)


class MemoryTests(ThrottleTestCase):
    """
    Only addresses with unforgiven failures or checks under way are kept,
    and at most C{clients} of the former.
    """

    def test_bounded(self):
        """A peer failing from many addresses is remembered for the last C{clients} of them only."""
        for index in range(1000):
            self.throttle.failed(f"10.0.{index // 256}.{index % 256}")
        self.assertEqual(len(self.throttle), 4)
        self.assertEqual(list(self.throttle._idle), ["10.0.3.228", "10.0.3.229", "10.0.3.230", "10.0.3.231"])

    def test_forgiven_forgotten(self):
        """Addresses whose failures are forgiven are forgotten, the least recently failed first."""
        self.throttle.failed("192.0.2.2")
        self.fail_logins("192.0.2.1", 3)
        self.clock.advance(10)
        self.throttle.failed("192.0.2.3")
        self.assertEqual(list(self.throttle._idle), ["192.0.2.1", "192.0.2.3"])
        self.clock.advance(30)
        self.throttle.failed("192.0.2.3")
        self.assertEqual(list(self.throttle._idle), ["192.0.2.3"])

    def test_line_bounded(self):
        """At most C{clients} checks wait in all; past that every address is refused until the line shortens."""
        for index in range(3 + 4):
            self.assertEqual(self.throttle.wait(f"10.0.0.{index}"), 0)
            self.throttle.run(f"10.0.0.{index}", lambda: True)
        self.assertEqual(self.throttle.wait("198.51.100.1"), 10.0)
        self.checks.end(result=True)
        self.assertEqual(self.throttle.wait("198.51.100.1"), 0)

    def test_busy_address_kept(self):
        """An address with checks under way is not forgotten to make room: its limits still hold."""
        self.fail_logins("192.0.2.1", 2)
        self.throttle.run("192.0.2.1", lambda: False)
        for index in range(10):
            self.throttle.failed(f"10.0.0.{index}")
        self.assertGreater(self.throttle.wait("192.0.2.1"), 0)
        self.assertIn("192.0.2.1", self.throttle._busy)
