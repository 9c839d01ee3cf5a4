"""
Tests for L{netproxy.message.redis_scripts}, run directly in a real
C{redis-server}: each script compiles and is known by the SHA-1 we send,
and the table's indexes stay consistent through expiry, removal and
replacement.
"""

import json

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from netproxy.message import redis_scripts
from netproxy.message.redis_scripts import CANDIDATES, MARK_DOWN, MARK_UP, REGISTER, REMOVE, SYNC
from netproxy.redis_client import RedisClient, parse_redis_url
from tests.integration.redis_server import start_redis

P = "t:"


class ScriptTests(TestCase):
    timeout = 60

    async def setUp(self):
        self.redis = await start_redis(self)
        self.client = RedisClient(reactor, parse_redis_url("registry", self.redis.url))
        self.client.startService()
        self.addCleanup(self.client.stopService)

    def register(self, key, policy="PP", host="h1", port=1, token=None, lease=60000, max_servers=10, per_host=10):
        return self.client.run(REGISTER, (), (P, key, key, policy, host, port, token or f"tok-{key}", lease,
                                              max_servers, per_host))

    async def candidates(self, policy="PP"):
        """
        :returns: the candidates, decoded from their JSON text.
        """
        return json.loads(await self.client.run(CANDIDATES, (), (P, policy)))

    async def test_known_by_their_sha(self):
        """Each script compiles, and SCRIPT LOAD gives the SHA-1 the client sends with EVALSHA."""
        for script in (REGISTER, REMOVE, CANDIDATES, MARK_DOWN, MARK_UP, SYNC):
            self.assertEqual(await self.client.execute("SCRIPT", "LOAD", script.source), script.sha.encode())
        self.assertTrue(redis_scripts.__doc__)

    async def test_expiry_keeps_indexes(self):
        """An expired registration leaves the rotation, the host count and the pointer as a removal does."""
        await self.register("a")
        await self.register("b")
        await self.register("c")
        first = await self.candidates()
        self.assertEqual([entry[0] for entry in first], ["a", "b", "c"])
        self.assertEqual(await self.client.execute("HGET", P + "hosts", "h1"), b"3")
        await self.client.execute("ZADD", P + "leases", 0, "b")  # its lease ends now
        second = await self.candidates()
        self.assertEqual([entry[0] for entry in second], ["c", "a"])
        self.assertEqual(await self.client.execute("HGET", P + "hosts", "h1"), b"2")
        self.assertEqual(await self.client.execute("EXISTS", P + "s:b"), 0)

    async def test_stale_token(self):
        """Removal, down marks and renewals naming an older registration of the id change nothing."""
        await self.register("a", token="old")
        await self.register("a", token="new", port=2)
        self.assertEqual(await self.client.run(REMOVE, (), (P, "a", "old")), 0)
        self.assertEqual(await self.client.run(MARK_DOWN, (), (P, "a", "old", 1000, 30000, 1000)), [0, 0])
        self.assertEqual(await self.client.run(MARK_UP, (), (P, "a", "old", 1000)), 0)
        ((key, _, _, port, token, failures, wait),) = await self.candidates()
        self.assertEqual((key, port, token, failures, wait), ("a", 2, "new", 0, -1))
        self.assertEqual(await self.client.run(REMOVE, (), (P, "a", "new")), 1)
        self.assertEqual(await self.candidates(), [])

    async def test_down_marks_in_candidates(self):
        """A down server comes after the available ones, with its failures and the milliseconds until it is due."""
        await self.register("a")
        await self.register("b")
        await self.client.run(MARK_DOWN, (), (P, "a", "tok-a", 60000, 60000, 1000))
        (b, a) = await self.candidates()
        self.assertEqual((b[0], b[5], b[6]), ("b", 0, -1))
        self.assertEqual((a[0], a[5]), ("a", 1))
        self.assertTrue(0 < a[6] <= 60000, a)

    async def test_down_mark_of_a_replaced_registration(self):
        """A replacement starts up, even if the registration it replaced was down."""
        await self.register("a", token="old")
        await self.client.run(MARK_DOWN, (), (P, "a", "old", 60000, 60000, 1000))
        await self.register("a", token="new")
        ((*_, failures, wait),) = await self.candidates()
        self.assertEqual((failures, wait), (0, -1))

    async def test_sync_statuses(self):
        """Renewal answers ok for a current registration, lost for a replaced one, missing for one gone."""
        await self.register("a", token="mine")
        await self.register("b", token="theirs")
        reply = await self.client.run(SYNC, (), (P, 60000, "a", "mine", 1, "b", "older", 0, "c", "any", 0))
        now, statuses, table, turns = reply
        self.assertEqual(statuses, [b"ok", b"lost", b"missing"])
        self.assertEqual(sorted(entry[0] for entry in table), [b"a", b"b"])
        self.assertEqual(await self.client.execute("HGET", P + "s:a", "lifeline"), b"1")
