"""
Tests for L{netproxy.message.redis_registry} against a real C{redis-server}:
several registries in one process stand for several reverse proxies sharing
one table (each with its own connection), and Redis is killed and started
again under them.
"""

from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from netproxy.errors import SetupRefused
from netproxy.message.redis_registry import RedisRegistry
from netproxy.message.redis_scripts import MARK_DOWN
from netproxy.message.registry import IServerRegistry
from netproxy.redis_client import RedisClient, parse_redis_url
from tests.integration.redis_server import start_redis
from tests.test_redis_client import FakeEndpoint

PREFIX = b"netproxy:reverse:"
POLLS = 100


async def until(condition):
    """
    Check C{condition} (a coroutine function) every 0.1 s until it holds, at most L{POLLS} times.

    :returns: its last value.
    """
    for _ in range(POLLS):
        value = await condition()
        if value:
            return value
        await deferLater(reactor, 0.1, lambda: None)
    return await condition()


class _RegistryTestCase(TestCase):
    timeout = 60

    async def setUp(self):
        self.redis = await start_redis(self)

    async def registry(self, **options):
        """
        :returns: a started L{RedisRegistry} on this test's Redis, connected.
        """
        client = RedisClient(reactor, parse_redis_url("registry", self.redis.url))
        registry = RedisRegistry(reactor, client, **options)
        registry.startService()
        self.addCleanup(registry.stopService)
        self.assertEqual(await client.execute("PING"), "PONG")
        return registry

    async def refused(self, registering):
        """
        :returns: the L{SetupRefused} C{registering} fails with.
        """
        try:
            server = await registering
        except SetupRefused as error:
            return error
        self.fail(f"registered {server}")

    async def first(self, registry, policy, count=1):
        """
        :returns: the ids of the servers that take the next C{count} messages through C{registry}.
        """
        return [(await registry.candidates(policy))[0].server_id for _ in range(count)]


class SharedTableTests(_RegistryTestCase):
    async def test_interface(self):
        """RedisRegistry provides IServerRegistry."""
        self.assertTrue(verifyObject(IServerRegistry, await self.registry()))

    async def test_strict_cycle_across_registries(self):
        """30 messages taken in turn through 3 registries over 3 servers go to each 10 times, in a strict cycle."""
        registries = [await self.registry() for _ in range(3)]
        for n, registry in enumerate(registries):
            await registry.register(100 + n, "PP_1", "127.0.0.1", 2000 + n)
        picked = []
        for n in range(30):
            picked += await self.first(registries[n % 3], "PP_1")
        self.assertEqual(picked, [100, 101, 102] * 10)

    async def test_concurrent_picks_split(self):
        """Picks made at once through two registries split exactly over the servers."""
        one, two = await self.registry(), await self.registry()
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        await two.register(2, "PP_1", "127.0.0.1", 2002)
        picks = await gatherResults([registry.candidates("PP_1") for registry in (one, two) * 6])
        self.assertEqual(Counter(candidates[0].server_id for candidates in picks), {1: 6, 2: 6})

    async def test_registration_seen_by_the_other(self):
        """A server registered through one registry is the other's candidate, with its id's type, host and port."""
        one, two = await self.registry(), await self.registry()
        await one.register("7", "PP_1", "::ffff:127.0.0.1", 2007)
        (server,) = await two.candidates("PP_1")
        self.assertEqual((server.server_id, server.host, server.port), ("7", "127.0.0.1", 2007))

    async def test_no_server(self):
        """A policy nobody serves has no candidates."""
        self.assertEqual(await (await self.registry()).candidates("PP_9"), [])


class OwnershipTests(_RegistryTestCase):
    async def test_other_host_refused(self):
        """An id registered from one host is refused to another through another registry; the holder keeps it."""
        one, two = await self.registry(), await self.registry()
        await one.register(7, "PP_1", "127.0.0.1", 2007)
        error = await self.refused(two.register(7, "PP_1", "10.0.0.2", 3007))
        self.assertEqual(str(error), "setup refused: server id 7 is registered from another host")
        self.assertEqual(error.detail, "server id 7 is held by 127.0.0.1:2007, registered from another host")
        (server,) = await two.candidates("PP_1")
        self.assertEqual(server.port, 2007)

    async def test_same_host_replaces_in_place(self):
        """The same host replaces its id through another registry, keeping its turn; the old one's removal is a no-op."""
        one, two = await self.registry(), await self.registry()
        old = await one.register(1, "PP_1", "127.0.0.1", 2001)
        await one.register(2, "PP_1", "127.0.0.1", 2002)
        await two.register(1, "PP_1", "127.0.0.1", 3001)
        self.assertFalse(await one.remove(old))
        candidates = await one.candidates("PP_1")
        self.assertEqual([(server.server_id, server.port) for server in candidates], [(1, 3001), (2, 2002)])

    async def test_caps_across_registries(self):
        """--max-servers and --max-servers-per-host count every registry's registrations."""
        one, two = await self.registry(max_servers=3, max_per_host=2), await self.registry(max_servers=3,
                                                                                             max_per_host=2)
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        await two.register(2, "PP_1", "127.0.0.1", 2002)
        error = await self.refused(one.register(3, "PP_1", "127.0.0.1", 2003))
        self.assertEqual(error.detail, "--max-servers-per-host 2 reached by 127.0.0.1")
        await two.register(2, "PP_2", "127.0.0.1", 2012)  # a replacement takes no new place
        await one.register(3, "PP_1", "10.0.0.3", 2003)
        error = await self.refused(two.register(4, "PP_1", "10.0.0.4", 2004))
        self.assertEqual(error.detail, "--max-servers 3 reached")

    async def test_race_for_one_id(self):
        """Two hosts registering one id at once through two registries: exactly one wins."""
        one, two = await self.registry(), await self.registry()
        results = await gatherResults([
            one.register(5, "PP_1", "10.0.0.1", 2005).addErrback(lambda failure: failure.trap(SetupRefused)),
            two.register(5, "PP_1", "10.0.0.2", 2005).addErrback(lambda failure: failure.trap(SetupRefused)),
        ])
        winners = [result for result in results if result is not SetupRefused]
        self.assertEqual(len(winners), 1, results)
        (server,) = await one.candidates("PP_1")
        self.assertEqual(server.host, winners[0].host)

    async def test_removal_keeps_the_pointer(self):
        """Removing a server whose turn has passed keeps the rotation on the server due next, for every registry."""
        one, two = await self.registry(), await self.registry()
        first = await one.register(1, "PP_1", "127.0.0.1", 2001)
        await one.register(2, "PP_1", "127.0.0.1", 2002)
        await one.register(3, "PP_1", "127.0.0.1", 2003)
        self.assertEqual(await self.first(one, "PP_1"), [1])
        self.assertTrue(await one.remove(first))
        self.assertEqual(await self.first(two, "PP_1", 3), [2, 3, 2])


class DownMarkTests(_RegistryTestCase):
    async def test_down_shared_and_cleared(self):
        """A server marked down through one registry is last for the other; one answer through the other clears it for all."""
        one, two = await self.registry(first_retry=30), await self.registry(first_retry=30)
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        await one.register(2, "PP_1", "127.0.0.1", 2002)
        (server, _) = await one.candidates("PP_1")
        one.mark_down(server)
        candidates = await until(lambda: two.candidates("PP_1").addCallback(
            lambda servers: servers if servers[-1].retry_at is not None else None))
        self.assertEqual([s.server_id for s in candidates], [2, 1])
        self.assertEqual(candidates[-1].failures, 1)
        two.mark_up(candidates[-1])
        cleared = await until(lambda: one.candidates("PP_1").addCallback(
            lambda servers: all(s.retry_at is None for s in servers)))
        self.assertTrue(cleared)

    async def test_back_off_doubles(self):
        """Each failure in a row doubles the shared wait, up to the longest."""
        one = await self.registry(first_retry=1, max_retry=3)
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        waits = []
        for _ in range(3):
            reply = await one.client.run(MARK_DOWN, (), (PREFIX, "1", one.servers()[0].token, 1000, 3000, 10000))
            waits.append(reply)
        self.assertEqual(waits, [[1, 1000], [2, 2000], [3, 3000]])


class LeaseTests(_RegistryTestCase):
    async def lease_past(self, when):
        """
        :returns: whether server 1's lease ends after C{when} (ms, Redis's clock).
        """
        score = await self.redis.command(b"ZSCORE", PREFIX + b"leases", b"1")
        return score is not None and float(score) > when

    async def test_unrenewed_lease_ends(self):
        """A registration nobody renews is gone for every registry once its lease ends."""
        one, two = await self.registry(lease=1), await self.registry(lease=1)
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        await one.stopService()
        self.assertEqual(len(await two.candidates("PP_1")), 1)
        gone = await until(lambda: two.candidates("PP_1").addCallback(lambda servers: servers == []))
        self.assertTrue(gone)
        self.assertEqual(await self.redis.command(b"HLEN", PREFIX + b"hosts"), 0)

    async def test_held_lease_renewed(self):
        """The registry that took a setup renews its lease while it runs."""
        one = await self.registry(lease=1, sync_every=0.2)
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        before = float(await self.redis.command(b"ZSCORE", PREFIX + b"leases", b"1"))
        self.assertTrue(await until(lambda: self.lease_past(before + 1000)))

    async def test_down_one_shot_not_renewed(self):
        """A server that closed its setup connection is not renewed while marked down: it is gone a lease later."""
        one = await self.registry(lease=1, sync_every=0.2, first_retry=30)
        server = await one.register(1, "PP_1", "127.0.0.1", 2001)
        one.mark_down(server)
        gone = await until(lambda: one.candidates("PP_1").addCallback(lambda servers: servers == []))
        self.assertTrue(gone)

    async def test_down_lifeline_renewed(self):
        """A lifeline's lease is renewed even while it is marked down."""
        one = await self.registry(lease=1, sync_every=0.2, first_retry=30)
        server = await one.register(1, "PP_1", "127.0.0.1", 2001)
        one.lifeline(server)
        one.mark_down(server)
        before = float(await self.redis.command(b"ZSCORE", PREFIX + b"leases", b"1"))
        self.assertTrue(await until(lambda: self.lease_past(before + 1500)))


class OutageTests(_RegistryTestCase):
    async def test_outage_and_return(self):
        """Redis gone: candidates from the last table with one warning, setups taken locally; once back, every held registration is written back."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        one = await self.registry()
        await one.register(1, "PP_1", "127.0.0.1", 2001)
        await one.register(2, "PP_1", "127.0.0.1", 2002)
        await one.sync()
        await self.redis.kill()
        picks = await self.first(one, "PP_1", 4)
        self.assertEqual(Counter(picks), {1: 2, 2: 2})
        local = await one.register(3, "PP_1", "127.0.0.1", 2003)
        self.assertEqual(local.token, "")
        self.assertEqual(len(await one.candidates("PP_1")), 3)
        warnings = [formatEvent(event) for event in events if "is unavailable" in formatEvent(event)]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("serving from the last table seen", warnings[0])
        await self.redis.start()
        async def written():
            return await self.redis.command(b"ZCARD", PREFIX + b"leases") == 3

        self.assertTrue(await until(written))
        self.assertTrue(local.token)
        two = await self.registry()
        self.assertEqual(sorted(s.server_id for s in await two.candidates("PP_1")), [1, 2, 3])

    async def test_conflict_on_return(self):
        """A setup taken locally while Redis was out of reach loses to one another host made in Redis meanwhile."""
        one = await self.registry()
        await one.client.stopService()  # Redis out of reach, for this registry only
        local = await one.register(9, "PP_1", "10.0.0.1", 2009)
        self.assertEqual(local.token, "")
        two = await self.registry()
        await two.register(9, "PP_1", "10.0.0.2", 2009)
        one.client.startService()

        async def dropped():
            await one.sync()
            return local not in one.held

        self.assertTrue(await until(dropped))
        (server,) = await one.candidates("PP_1")
        self.assertEqual(server.host, "10.0.0.2")


class HostileReplyTests(SynchronousTestCase):
    """
    Replies no script of ours gives (a Redis that is not one, or a bug):
    the registry falls back to its own table instead of failing the message.
    """

    def setUp(self):
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        client = RedisClient(self.clock, parse_redis_url("registry", "redis://127.0.0.1/0"), endpoint=self.endpoint,
                             retry_policy=lambda attempt: 1.0)
        self.registry = RedisRegistry(self.clock, client)
        self.registry.startService()
        self.addCleanup(self.registry.stopService)
        # The renewal sent on connecting, answered with an empty table.
        self.endpoint.protocols[0].dataReceived(b"*4\r\n:0\r\n*0\r\n*0\r\n*0\r\n")
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_bad_candidates(self):
        """Candidates that are not the script's JSON, or not its entries, give the local table's, with a warning."""
        self.registry.local.register(1, "PP_1", "127.0.0.1", 2001)
        protocol = self.endpoint.protocols[0]
        for reply in (b"$8\r\nnot json\r\n", b"$7\r\n[[1,2]]\r\n", b':5\r\n', b'$22\r\n[["k",1,"h","x","t",0]]\r\n',
                      b'$26\r\n[["k",1,"h","80","t",0,-1]]\r\n'):
            picking = self.registry.candidates("PP_1")
            protocol.dataReceived(reply)
            self.assertEqual([server.server_id for server in self.successResultOf(picking)], [1])
        warnings = [formatEvent(event) for event in self.events if "is unavailable" in formatEvent(event)]
        self.assertEqual(len(warnings), 1, warnings)

    def test_bad_registration_reply(self):
        """A registration answered with something else is taken into the local table."""
        protocol = self.endpoint.protocols[0]
        registering = self.registry.register(1, "PP_1", "127.0.0.1", 2001)
        protocol.dataReceived(b"*1\r\n$5\r\nweird\r\n")
        server = self.successResultOf(registering)
        self.assertEqual(server.token, "")
        self.assertEqual(self.registry.servers(), [server])


class CancelledTests(SynchronousTestCase):
    """
    A request cancelled by its caller (the client of the message left) is
    neither an outage nor a bug.
    """

    setUp = HostileReplyTests.setUp

    def test_cancelled_candidates(self):
        """Cancelling the choice of servers while Redis has not answered logs no failure, does not switch to the
        local table, and moves no local rotation; Redis's late answer is dropped."""
        self.registry.local.register(1, "PP_1", "127.0.0.1", 2001)
        self.registry.local.register(2, "PP_1", "127.0.0.1", 2002)
        picking = self.registry.candidates("PP_1")
        picking.cancel()
        self.failureResultOf(picking, CancelledError)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertFalse(self.registry.degraded)
        self.assertEqual([formatEvent(event) for event in self.events if "is unavailable" in formatEvent(event)], [])
        self.assertEqual([server.server_id for server in self.registry.local.candidates("PP_1")], [1, 2])
        self.endpoint.protocols[0].dataReceived(b"$2\r\n[]\r\n")
        self.assertTrue(self.registry.client.connected)
