"""
Tests for L{netproxy.message.registry}: the reverse proxy's switching table, its
round-robin rotation, replacement, removal and failover, the ownership of
server ids by hosts and the limits on registrations, all in memory.
"""

from collections import Counter
from copy import deepcopy

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import SetupRefused
from netproxy.message.registry import DEFAULT_MAX_PER_HOST, DEFAULT_MAX_SERVERS, Server, ServerRegistry, host_key


def make_registry(*servers, clock=None, **kwargs):
    """
    :param servers: C{(server_id, policy)} pairs, registered in order with
        host C{127.0.0.1} and port C{1000 + n}.
    :returns: C{(registry, clock, registered servers)}.
    """
    clock = Clock() if clock is None else clock
    registry = ServerRegistry(clock, **kwargs)
    registered = [
        registry.register(server_id, policy, "127.0.0.1", 1000 + n) for n, (server_id, policy) in enumerate(servers)
    ]
    return registry, clock, registered


def picks(registry, policy, count):
    """
    :returns: the ids of the servers that take the next C{count} messages.
    """
    return [registry.candidates(policy)[0].server_id for _ in range(count)]


def ids(servers):
    return [server.server_id for server in servers]


class RoundRobinTests(SynchronousTestCase):
    def test_five_messages_alternate(self):
        """Five messages over servers 1 and 2 go 1, 2, 1, 2, 1."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 5), [1, 2, 1, 2, 1])

    def test_six_picks_split_evenly(self):
        """Six messages picked before any is answered split exactly 3/3 over two servers."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"))
        self.assertEqual(Counter(picks(registry, "PP_1", 6)), {1: 3, 2: 3})

    def test_policies_independent(self):
        """Messages for one policy do not move another policy's rotation."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_2"), (4, "PP_2"))
        self.assertEqual(picks(registry, "PP_1", 3), [1, 2, 1])
        self.assertEqual(picks(registry, "PP_2", 1), [3])
        self.assertEqual(picks(registry, "PP_1", 1), [2])
        self.assertEqual(picks(registry, "PP_2", 3), [4, 3, 4])

    def test_late_registration_joins_at_end(self):
        """A server registered later takes its turn after the servers registered before it."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"))
        first = picks(registry, "PP_1", 1)
        registry.register(3, "PP_1", "127.0.0.1", 1003)
        self.assertEqual(first + picks(registry, "PP_1", 5), [1, 2, 3, 1, 2, 3])

    def test_late_registration_after_full_turn(self):
        """A server registered just after the last one's turn comes next, then the rotation restarts."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"))
        first = picks(registry, "PP_1", 2)
        registry.register(3, "PP_1", "127.0.0.1", 1003)
        self.assertEqual(first + picks(registry, "PP_1", 4), [1, 2, 3, 1, 2, 3])

    def test_candidates_in_rotation_order(self):
        """Candidates list every up server, starting with the one whose turn it is."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(ids(registry.candidates("PP_1")), [1, 2, 3])
        self.assertEqual(ids(registry.candidates("PP_1")), [2, 3, 1])
        self.assertEqual(ids(registry.candidates("PP_1")), [3, 1, 2])
        self.assertEqual(ids(registry.candidates("PP_1")), [1, 2, 3])

    def test_candidates_down_servers_last_by_retry_time(self):
        """Down servers follow the available ones, the soonest due first."""
        registry, clock, (one, two, _three, _four) = make_registry(
            (1, "PP_1"), (2, "PP_1"), (3, "PP_1"), (4, "PP_1")
        )
        registry.mark_down(two)
        registry.mark_down(two)  # due at 2
        clock.advance(0.5)
        registry.mark_down(one)  # due at 1.5
        self.assertEqual(ids(registry.candidates("PP_1")), [3, 4, 1, 2])
        self.assertEqual(ids(registry.candidates("PP_1")), [4, 3, 1, 2])

    def test_unknown_policy(self):
        """A policy no server serves has no candidates."""
        registry, _, _ = make_registry((1, "PP_1"))
        self.assertEqual(registry.candidates("PP_9"), [])
        self.assertEqual(registry.servers("PP_9"), [])

    def test_servers(self):
        """servers() lists one policy's servers in registration order, or all of them."""
        registry, _, (one, two, three) = make_registry((1, "PP_1"), (2, "PP_2"), (3, "PP_1"))
        self.assertEqual(registry.servers("PP_1"), [one, three])
        self.assertEqual(registry.servers("PP_2"), [two])
        self.assertEqual(sorted(ids(registry.servers(None))), [1, 2, 3])
        self.assertEqual(sorted(ids(registry.servers())), [1, 2, 3])

    def test_servers_is_a_copy(self):
        """Changing the list servers() returns leaves the registry as it was."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"))
        registry.servers("PP_1").clear()
        registry.servers().clear()
        self.assertEqual(ids(registry.servers("PP_1")), [1, 2])
        self.assertEqual(picks(registry, "PP_1", 3), [1, 2, 1])


class ReplacementTests(SynchronousTestCase):
    def test_same_id_replaces_in_place(self):
        """A server registering again with its id (string or number) keeps its turn, with the new address."""
        registry, _, (one, _two, three) = make_registry((1, "PP_1"), (100, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 1), [1])
        new = registry.register("100", "PP_1", "::ffff:127.0.0.1", 2000)
        self.assertEqual(registry.servers("PP_1"), [one, new, three])
        chosen = registry.candidates("PP_1")[0]
        self.assertIs(chosen, new)
        self.assertEqual((chosen.server_id, chosen.host, chosen.port), ("100", "127.0.0.1", 2000))
        self.assertEqual(picks(registry, "PP_1", 3), [3, 1, "100"])

    def test_replacement_starts_up(self):
        """A down server that registers again is up at once, with no failures counted."""
        registry, _, (_one, two) = make_registry((1, "PP_1"), (2, "PP_1"))
        registry.mark_down(two)
        registry.mark_down(two)
        new = registry.register(2, "PP_1", "127.0.0.1", 1001)
        self.assertEqual((new.failures, new.retry_at, new.forwarded), (0, None, 0))
        self.assertEqual(picks(registry, "PP_1", 4), [1, 2, 1, 2])

    def test_new_policy_moves_server(self):
        """A server registering again under another policy leaves the old one and joins the new one last."""
        registry, _, (_one, two, three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_2"))
        new = registry.register(1, "PP_2", "127.0.0.1", 1000)
        self.assertEqual(registry.servers("PP_1"), [two])
        self.assertEqual(registry.servers("PP_2"), [three, new])
        self.assertEqual(picks(registry, "PP_1", 2), [2, 2])
        self.assertEqual(picks(registry, "PP_2", 3), [3, 1, 3])

    def test_new_policy_drops_empty_policy(self):
        """Moving a policy's only server leaves that policy without candidates."""
        registry, _, _ = make_registry((1, "PP_1"))
        registry.register(1, "PP_2", "127.0.0.1", 1000)
        self.assertEqual(registry.candidates("PP_1"), [])
        self.assertEqual(ids(registry.servers()), [1])

    def test_remove(self):
        """remove() forgets a current registration and says so."""
        registry, _, (one, two) = make_registry((1, "PP_1"), (2, "PP_1"))
        self.assertTrue(registry.remove(one))
        self.assertEqual(registry.servers(), [two])
        self.assertEqual(picks(registry, "PP_1", 2), [2, 2])
        self.assertFalse(registry.remove(one))

    def test_remove_replaced_entry(self):
        """Removing an entry that has been replaced returns False and keeps the new registration."""
        registry, _, (one, old) = make_registry((1, "PP_1"), (2, "PP_1"))
        new = registry.register("2", "PP_1", "127.0.0.1", 2000)
        self.assertFalse(registry.remove(old))
        self.assertEqual(registry.servers("PP_1"), [one, new])

    def test_remove_entry_replaced_under_other_policy(self):
        """Removing an entry that moved to another policy leaves the moved registration alone."""
        registry, _, (one, old) = make_registry((1, "PP_1"), (2, "PP_1"))
        new = registry.register(2, "PP_2", "127.0.0.1", 2000)
        self.assertFalse(registry.remove(old))
        self.assertEqual(registry.servers("PP_2"), [new])
        self.assertEqual(registry.servers("PP_1"), [one])

    def test_remove_last_server(self):
        """Removing a policy's last server leaves the policy without candidates."""
        registry, _, (one,) = make_registry((1, "PP_1"))
        self.assertTrue(registry.remove(one))
        self.assertEqual(registry.candidates("PP_1"), [])
        self.assertEqual(registry.servers(), [])

    def test_register_after_removing_all(self):
        """A policy emptied and registered again starts its rotation afresh."""
        registry, _, (one, two) = make_registry((1, "PP_1"), (2, "PP_1"))
        picks(registry, "PP_1", 1)
        registry.remove(one)
        registry.remove(two)
        registry.register(3, "PP_1", "127.0.0.1", 1003)
        registry.register(4, "PP_1", "127.0.0.1", 1004)
        self.assertEqual(picks(registry, "PP_1", 3), [3, 4, 3])

    def test_remove_before_pointer(self):
        """Removing a server that has had its turn keeps the server that was due next."""
        registry, _, (one, _two, _three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 2), [1, 2])
        registry.remove(one)
        self.assertEqual(picks(registry, "PP_1", 3), [3, 2, 3])

    def test_remove_after_pointer(self):
        """Removing a server still waiting for its turn keeps the server that was due next."""
        registry, _, (_one, _two, three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 1), [1])
        registry.remove(three)
        self.assertEqual(picks(registry, "PP_1", 3), [2, 1, 2])

    def test_remove_server_due_next(self):
        """Removing the server whose turn it is hands the turn to the one after it."""
        registry, _, (_one, two, _three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 1), [1])
        registry.remove(two)
        self.assertEqual(picks(registry, "PP_1", 3), [3, 1, 3])

    def test_remove_last_after_full_turn(self):
        """Removing the server that just had its turn, last in the rotation, hands the turn to the first."""
        registry, _, (_one, _two, three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 3), [1, 2, 3])
        registry.remove(three)
        self.assertEqual(picks(registry, "PP_1", 3), [1, 2, 1])

    def test_move_keeps_old_policy_fair(self):
        """A server leaving for another policy keeps its old policy's rotation fair."""
        registry, _, _ = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        self.assertEqual(picks(registry, "PP_1", 2), [1, 2])
        registry.register(1, "PP_2", "127.0.0.1", 1000)
        self.assertEqual(picks(registry, "PP_1", 3), [3, 2, 3])


class FailoverTests(SynchronousTestCase):
    def test_back_off_doubles_up_to_max(self):
        """Each failure in a row doubles the wait, from first_retry up to max_retry."""
        registry, clock, (one,) = make_registry((1, "PP_1"), first_retry=1.0, max_retry=30.0)
        waits = []
        for _ in range(8):
            registry.mark_down(one)
            waits.append(one.retry_at - clock.seconds())
            clock.advance(100)
        self.assertEqual(waits, [1, 2, 4, 8, 16, 30, 30, 30])
        self.assertEqual(one.failures, 8)

    def test_back_off_from_now(self):
        """The wait is counted from the time of the failure on the injected clock."""
        registry, clock, (one,) = make_registry((1, "PP_1"), first_retry=0.5)
        clock.advance(10)
        registry.mark_down(one)
        self.assertEqual(one.retry_at, 10.5)

    def test_long_outage(self):
        """Thousands of failures in a row keep the wait at max_retry."""
        registry, _clock, (one,) = make_registry((1, "PP_1"), first_retry=1.0, max_retry=30.0)
        for _ in range(5000):
            registry.mark_down(one)
        self.assertEqual(one.retry_at, 30.0)

    def test_down_server_skipped_until_back_off_passes(self):
        """A down server takes no turn until its back-off passes, then takes its turn again."""
        registry, clock, (_one, two, _three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        registry.mark_down(two)
        self.assertEqual(picks(registry, "PP_1", 4), [1, 3, 1, 3])
        clock.advance(0.75)
        self.assertEqual(picks(registry, "PP_1", 2), [1, 3])
        clock.advance(0.25)
        self.assertEqual(picks(registry, "PP_1", 6), [1, 2, 3, 1, 2, 3])

    def test_down_server_tried_last(self):
        """A message whose server is down goes first to the next server, the down one last."""
        registry, _clock, (one, two) = make_registry((1, "PP_1"), (2, "PP_1"))
        first = registry.candidates("PP_1")
        self.assertEqual(first, [one, two])
        registry.mark_down(one)
        self.assertEqual(registry.candidates("PP_1"), [two, one])

    def test_retried_server_that_fails_again_waits_longer(self):
        """A server that fails its retry goes down again for twice as long."""
        registry, clock, (one, _two) = make_registry((1, "PP_1"), (2, "PP_1"))
        registry.mark_down(one)
        clock.advance(1)
        self.assertTrue(one.available(clock.seconds()))
        registry.mark_down(one)
        self.assertEqual(one.retry_at, 3)
        self.assertFalse(one.available(clock.seconds()))

    def test_mark_up(self):
        """An answer resets a server's failures, brings it up and counts the message."""
        registry, clock, (one, _two) = make_registry((1, "PP_1"), (2, "PP_1"))
        registry.mark_down(one)
        registry.mark_down(one)
        registry.mark_down(one)
        clock.advance(4)
        registry.mark_up(one)
        registry.mark_up(one)
        self.assertEqual((one.failures, one.retry_at, one.forwarded), (0, None, 2))
        registry.mark_down(one)
        self.assertEqual(one.retry_at, clock.seconds() + 1)

    def test_all_down_last_resort(self):
        """With every server down, candidates still lists them all, the soonest due first."""
        registry, clock, (one, two, three) = make_registry((1, "PP_1"), (2, "PP_1"), (3, "PP_1"))
        registry.mark_down(one)
        registry.mark_down(one)  # due at 2
        registry.mark_down(two)
        registry.mark_down(two)
        registry.mark_down(two)  # due at 4
        registry.mark_down(three)  # due at 1
        self.assertEqual(registry.candidates("PP_1"), [three, one, two])
        clock.advance(1)
        self.assertEqual(registry.candidates("PP_1"), [three, one, two])
        registry.mark_down(three)  # due at 3
        self.assertEqual(registry.candidates("PP_1"), [one, three, two])


class ServerTests(SynchronousTestCase):
    def test_address(self):
        """A server's address is host:port, with an IPv6 host in brackets."""
        self.assertEqual(Server(1, "PP_1", "127.0.0.1", 124).address, "127.0.0.1:124")
        self.assertEqual(Server(1, "PP_1", "backend.example", 124).address, "backend.example:124")
        self.assertEqual(Server(1, "PP_1", "::1", 124).address, "[::1]:124")
        self.assertEqual(Server(1, "PP_1", "fe80::1%eth0", 124).address, "[fe80::1%eth0]:124")

    def test_key(self):
        """A server's key is the same whether its id was sent as a number or a string."""
        self.assertEqual(Server(100, "PP_1", "h", 1).key, Server("100", "PP_1", "h", 1).key)
        self.assertNotEqual(Server(100, "PP_1", "h", 1).key, Server(10, "PP_1", "h", 1).key)

    def test_available(self):
        """A server is available when up, or once the clock reaches its retry time."""
        server = Server(1, "PP_1", "h", 1)
        self.assertTrue(server.available(0))
        server.retry_at = 5.0
        self.assertFalse(server.available(4.9))
        self.assertTrue(server.available(5.0))


class OwnershipTests(SynchronousTestCase):
    """
    A server id belongs to the host that registered it.
    """

    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def warnings(self):
        return [formatEvent(event) for event in self.events if event["log_level"] == LogLevel.warn]

    def test_other_host_refused(self):
        """A setup for a held id from another host is refused, and the holder keeps its place, state and traffic."""
        registry, clock, (one, holder) = make_registry((1, "PP_1"), (100, "PP_1"))
        registry.mark_down(holder)
        error = self.assertRaises(SetupRefused, registry.register, 100, "PP_1", "127.0.0.2", 6666)
        self.assertEqual(str(error), "setup refused: server id 100 is registered from another host")
        self.assertEqual(error.detail, "server id 100 is held by 127.0.0.1:1001, registered from another host")
        self.assertEqual(registry.servers(), [one, holder])
        self.assertEqual(holder.failures, 1)
        clock.advance(60)
        self.assertEqual(picks(registry, "PP_1", 3), [1, 100, 1])
        self.assertEqual(registry.count("127.0.0.2"), 0)

    def test_other_host_any_spelling_of_id_or_policy(self):
        """The id is held whatever its spelling, and another host cannot take it under another policy either."""
        registry, _, (holder,) = make_registry((100, "PP_1"))
        for server_id, policy in ((100, "PP_1"), ("100", "PP_1"), (" 100 ", "PP_2")):
            self.assertRaises(SetupRefused, registry.register, server_id, policy, "::1", 7000)
        self.assertEqual(registry.servers(), [holder])
        self.assertEqual(registry.servers("PP_2"), [])

    def test_same_host_any_spelling_replaces(self):
        """One host spelt differently (IPv4-mapped, IPv6 shorthand) is the same host, and may replace its server."""
        registry = ServerRegistry(Clock())
        registry.register(100, "PP_1", "127.0.0.1", 1000)
        new = registry.register(100, "PP_1", "::ffff:127.0.0.1", 2000)
        self.assertEqual((new.host, new.port), ("127.0.0.1", 2000))
        registry.register(200, "PP_1", "::1", 1000)
        other = registry.register(200, "PP_1", "0:0:0::1", 2000)
        self.assertEqual(registry.servers(), [new, other])
        self.assertEqual((registry.count("127.0.0.1"), registry.count("::1")), (1, 1))

    def test_free_once_holder_removed(self):
        """Once its holder is removed (its lifeline closed), an id may be registered from another host."""
        registry, _, (holder,) = make_registry((100, "PP_1"))
        self.assertTrue(registry.remove(holder))
        new = registry.register(100, "PP_1", "127.0.0.2", 6666)
        self.assertEqual(registry.servers(), [new])

    def test_displaced_server_logged(self):
        """A server replaced by a setup for another port or policy is logged at warn with both addresses."""
        registry, _, _ = make_registry((100, "PP_1"))
        registry.register(100, "PP_2", "127.0.0.1", 2000)
        self.assertEqual(self.warnings(), [
            "server id 100 at 127.0.0.1:1000 of privacy policy PP_1 displaced by a new setup for 127.0.0.1:2000 "
            "of privacy policy PP_2"])

    def test_same_address_again_not_logged(self):
        """A server sending its setup again for the same port and policy displaces nobody: no warning."""
        registry, _, _ = make_registry((100, "PP_1"))
        registry.register(100, "PP_1", "127.0.0.1", 1000)
        self.assertEqual(self.warnings(), [])

    def test_refusal_not_logged_here(self):
        """A refused setup is logged by the reverse proxy, which knows the peer; the registry logs nothing."""
        registry, _, _ = make_registry((100, "PP_1"))
        self.assertRaises(SetupRefused, registry.register, 100, "PP_1", "127.0.0.2", 6666)
        self.assertEqual(self.warnings(), [])

    def test_host_key(self):
        """host_key gives every address one spelling and leaves other text alone."""
        self.assertEqual(host_key("::ffff:10.1.2.3"), "10.1.2.3")
        self.assertEqual(host_key("2001:DB8:0::1"), "2001:db8::1")
        self.assertEqual(host_key("127.0.0.1"), "127.0.0.1")
        self.assertEqual(host_key("not an address"), "not an address")


class LimitTests(SynchronousTestCase):
    """
    Registrations are limited in total and per host.
    """

    def test_defaults(self):
        """By default 1024 servers may be registered in all, 64 from one host."""
        registry = ServerRegistry(Clock())
        self.assertEqual((DEFAULT_MAX_SERVERS, DEFAULT_MAX_PER_HOST), (1024, 64))
        self.assertEqual((registry.max_servers, registry.max_per_host), (1024, 64))

    def test_flood_from_one_host(self):
        """2,000 setups from one host keep 64 servers; the rest are refused and a message has 64 candidates."""
        registry = ServerRegistry(Clock())
        refused = []
        for number in range(2000):
            try:
                registry.register(number, "PP_1", "127.0.0.1", 1024 + number)
            except SetupRefused as error:
                refused.append(str(error))
        self.assertEqual(registry.count("127.0.0.1"), 64)
        self.assertEqual(len(registry.candidates("PP_1")), 64)
        self.assertEqual(set(refused), {"setup refused: 64 servers are registered from 127.0.0.1, the most per host"})
        self.assertEqual(len(refused), 2000 - 64)

    def test_flood_from_many_hosts(self):
        """2,000 setups from 2,000 hosts keep 1,024 servers; the rest are refused."""
        registry = ServerRegistry(Clock())
        refused = []
        for number in range(2000):
            try:
                registry.register(number, "PP_1", f"10.0.{number // 256}.{number % 256}", 5000)
            except SetupRefused as error:
                refused.append(error)
        self.assertEqual(registry.count(), 1024)
        self.assertEqual(len(registry.servers()), 1024)
        self.assertEqual({str(error) for error in refused},
                         {"setup refused: 1024 servers are registered, the most allowed"})
        self.assertEqual(refused[0].detail, "--max-servers 1024 reached")

    def test_per_host_detail(self):
        """The log's reason for a per-host refusal names the option and the host."""
        registry = ServerRegistry(Clock(), max_per_host=1)
        registry.register(1, "PP_1", "10.0.0.1", 5000)
        error = self.assertRaises(SetupRefused, registry.register, 2, "PP_1", "10.0.0.1", 5001)
        self.assertEqual(error.detail, "--max-servers-per-host 1 reached by 10.0.0.1")

    def test_other_hosts_unaffected_by_one_full_host(self):
        """A host at its limit leaves room for servers of other hosts."""
        registry = ServerRegistry(Clock(), max_servers=10, max_per_host=2)
        registry.register(1, "PP_1", "10.0.0.1", 5000)
        registry.register(2, "PP_1", "10.0.0.1", 5001)
        self.assertRaises(SetupRefused, registry.register, 3, "PP_1", "10.0.0.1", 5002)
        registry.register(3, "PP_1", "10.0.0.2", 5002)
        self.assertEqual(ids(registry.servers()), [1, 2, 3])

    def test_replacement_at_the_limit(self):
        """At either limit, a server may still register again with its id, under its policy or another."""
        registry = ServerRegistry(Clock(), max_servers=2, max_per_host=2)
        registry.register(1, "PP_1", "10.0.0.1", 5000)
        registry.register(2, "PP_1", "10.0.0.1", 5001)
        registry.register(1, "PP_1", "10.0.0.1", 6000)
        registry.register(2, "PP_2", "10.0.0.1", 6001)
        self.assertEqual([(s.server_id, s.policy, s.port) for s in registry.servers()],
                         [(1, "PP_1", 6000), (2, "PP_2", 6001)])
        self.assertEqual((registry.count(), registry.count("10.0.0.1")), (2, 2))

    def test_removal_frees_a_place(self):
        """A server removed makes room for another, from any host."""
        registry = ServerRegistry(Clock(), max_servers=1)
        first = registry.register(1, "PP_1", "10.0.0.1", 5000)
        self.assertRaises(SetupRefused, registry.register, 2, "PP_1", "10.0.0.2", 5000)
        registry.remove(first)
        self.assertEqual((registry.count(), registry.count("10.0.0.1")), (0, 0))
        registry.register(2, "PP_1", "10.0.0.2", 5000)
        self.assertEqual(registry.count("10.0.0.2"), 1)


POLICIES = ("PP_1", "PP_2")

operations = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 5), st.booleans(), st.sampled_from(POLICIES)),
    st.tuples(st.just("remove"), st.integers(0, 1000)),
    st.tuples(st.just("pick"), st.sampled_from(POLICIES)),
)


def rotated(keys, first):
    index = keys.index(first)
    return keys[index:] + keys[:index]


def due_next(registry, policy):
    """
    :returns: the key of the server whose turn it is, leaving the rotation as it is.
    """
    return deepcopy(registry).candidates(policy)[0].key


class RotationPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(operations, max_size=40))
    def test_rotation_strict_after_any_changes(self, steps):
        """
        Whatever was registered, replaced, removed and picked before, the up
        servers of a policy take one turn each in registration order.
        """
        registry = ServerRegistry(Clock())
        order = {policy: [] for policy in POLICIES}
        current = {}
        issued = []
        for step in steps:
            if step[0] == "register":
                _, number, as_text, policy = step
                key = str(number)
                old = current.get(key)
                due = due_next(registry, policy) if order[policy] else None
                server = registry.register(key if as_text else number, policy, "127.0.0.1", 1000 + number)
                issued.append(server)
                current[key] = server
                if old is not None and old.policy == policy:
                    self.assertEqual(due_next(registry, policy), due)
                else:
                    if old is not None:
                        order[old.policy].remove(key)
                    order[policy].append(key)
            elif step[0] == "remove":
                if not issued:
                    continue
                server = issued[step[1] % len(issued)]
                policy = server.policy
                expected = current.get(server.key) is server
                due = due_next(registry, policy) if expected else None
                before = list(order[policy])
                self.assertEqual(registry.remove(server), expected)
                if expected:
                    del current[server.key]
                    order[policy].remove(server.key)
                    if order[policy]:
                        if due == server.key:
                            due = before[(before.index(due) + 1) % len(before)]
                        self.assertEqual(due_next(registry, policy), due)
            else:
                policy = step[1]
                candidates = [server.key for server in registry.candidates(policy)]
                if order[policy]:
                    self.assertEqual(candidates, rotated(order[policy], candidates[0]))
                else:
                    self.assertEqual(candidates, [])

        for policy in POLICIES:
            keys = order[policy]
            self.assertEqual([server.key for server in registry.servers(policy)], keys)
            taken = [registry.candidates(policy)[0].key for _ in range(2 * len(keys))]
            if keys:
                self.assertEqual(taken[: len(keys)], rotated(keys, taken[0]))
                self.assertEqual(taken[len(keys) :], taken[: len(keys)])


HOSTS = ("10.0.0.1", "10.0.0.2", "::ffff:10.0.0.2")

registrations = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 6), st.sampled_from(HOSTS), st.sampled_from(POLICIES)),
    st.tuples(st.just("remove"), st.integers(0, 1000)),
)


class OwnershipPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(registrations, max_size=40))
    def test_limits_and_owners_after_any_changes(self, steps):
        """
        Whatever was registered and removed, from whichever host, each id is
        held by the host that registered it first since it was last free,
        the limits hold, and the counts match the servers listed.
        """
        registry = ServerRegistry(Clock(), max_servers=4, max_per_host=2)
        owner = {}
        issued = []
        for step in steps:
            if step[0] == "register":
                _, number, host, policy = step
                key, host = str(number), host_key(host)
                would_fit = registry.count() < 4 and registry.count(host) < 2
                try:
                    issued.append(registry.register(number, policy, host, 5000 + number))
                except SetupRefused:
                    self.assertTrue(owner.get(key, host) != host or key not in owner and not would_fit)
                else:
                    self.assertTrue(owner.get(key, host) == host and (key in owner or would_fit))
                    owner[key] = host
            elif issued:
                server = issued[step[1] % len(issued)]
                if registry.remove(server):
                    del owner[server.key]
            servers = registry.servers()
            self.assertEqual({server.key: server.host for server in servers}, owner)
            self.assertLessEqual(len(servers), 4)
            self.assertEqual(registry.count(), len(servers))
            for host in set(HOSTS):
                count = sum(server.host == host_key(host) for server in servers)
                self.assertLessEqual(count, 2)
                self.assertEqual(registry.count(host), count)
