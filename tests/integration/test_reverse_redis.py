"""
End-to-end tests of reverse proxies sharing their switching table through
a real C{redis-server} (C{--registry redis://...}): several C{twistd
netproxy reverse} instances, third-party style servers and real
C{twistd netproxy server} daemons, and Redis killed and started again.
"""

import json
from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.daemon import LISTEN, start_daemon
from tests.integration.redis_server import start_redis
from tests.integration.reverse_peers import (
    FakeServer,
    ask,
    ask_concurrently,
    data_message,
    naive_ack,
    registered_line,
    setup_from,
    setup_message,
    sha1_hex,
    start_backend,
    start_killable_backend,
    kill,
    start_reverse,
)

# A lease short enough that its end is seen within a test, for the tests
# that wait for one to end; the others keep the default (10 s), so that a
# machine loaded enough to miss renewals for a few seconds does not reorder
# a rotation they check.
SHORT_LEASE = "3"
# Polls of a condition that takes up to a lease to come true, 0.2 s apart.
POLLS = 100


async def until(condition):
    """
    Check C{condition} (a coroutine function returning a truth) every 0.2 s
    until it holds, at most L{POLLS} times.

    :returns: its last value.
    """
    for _ in range(POLLS):
        value = await condition()
        if value:
            return value
        await deferLater(reactor, 0.2, lambda: None)
    return await condition()


class _SharedTestCase(TestCase):
    """
    A Redis and reverse proxies sharing it.
    """

    timeout = 120

    async def start_instances(self, count, *args):
        """
        :param args: more options for each.
        :returns: C{count} reverse proxies sharing this test's Redis.
        """
        starting = [Deferred.fromCoroutine(start_reverse(self, "--registry", self.redis.url, "--retry", "0.2",
                                                         *args)) for _ in range(count)]
        instances = await gatherResults(starting, consumeErrors=True).addErrback(
            lambda failure: failure.value.subFailure)
        for instance in instances:
            await instance.wait_for(r"connected to Redis at redis://127\.0\.0\.1:\d+/0")
        return instances

    async def wait_lifeline(self, server_id):
        """
        Wait until the registration of C{server_id} is a lifeline's in Redis
        (its setup connection open past the setup grace).
        """
        async def lifeline():
            key = b"netproxy:reverse:s:%d" % server_id
            return await self.redis.command(b"HGET", key, b"lifeline") == b"1"

        self.assertTrue(await until(lifeline), f"server {server_id}'s registration was never marked a lifeline")

    def assert_ack(self, answer, message, server_ids):
        """
        :returns: the id of the server that answered C{message} (one of C{server_ids}).
        """
        self.assertIn(str(answer.get("type")), ("2",), answer)
        self.assertEqual(answer.get("payload"), sha1_hex(message["payload"]), answer)
        self.assertIn(answer.get("srcid"), server_ids, answer)
        return answer["srcid"]


class GlobalRotationTests(_SharedTestCase):
    """
    One rotation for every instance.
    """

    async def setUp(self):
        self.redis = await start_redis(self)

    async def test_strict_cycle_through_three_instances(self):
        """
        30 messages sent in turn through 3 instances to a policy of 3 third-party servers (each registered through a different instance) go 10 to each, in a strict cycle.
        """
        instances = await self.start_instances(3)
        servers = [FakeServer(self) for _ in range(3)]
        for n, (server, instance) in enumerate(zip(servers, instances)):
            await server.setup(700 + n, "PP_G", instance.port)
            await instance.wait_for(registered_line(700 + n, "PP_G", server.port))
        serving = [server.serve(10, naive_ack(700 + n)) for n, server in enumerate(servers)]
        answered = []
        for n in range(30):
            message = data_message("PP_G", f"global {n}")
            (answer,) = await ask(instances[n % 3].port, message)
            answered.append(self.assert_ack(answer, message, ("700", "701", "702")))
        await gatherResults(serving, consumeErrors=True)
        self.assertEqual(Counter(answered), {"700": 10, "701": 10, "702": 10})
        first = answered[:3]
        self.assertEqual(sorted(first), ["700", "701", "702"])
        self.assertEqual(answered, first * 10)

    async def test_concurrent_split(self):
        """
        12 messages sent at the same moment through 2 instances to 2 servers split exactly 6/6.
        """
        first, second = await self.start_instances(2)
        await start_backend(self, first, 100, "PP_1")
        await start_backend(self, second, 200, "PP_1")
        messages = [data_message("PP_1", f"concurrent {n}", srcid=60 + n) for n in range(12)]
        asking = [ask_concurrently(instance.port, messages[n::2]) for n, instance in enumerate((first, second))]
        answers = await gatherResults([Deferred.fromCoroutine(a) for a in asking], consumeErrors=True)
        answered = Counter(self.assert_ack(answer, message, (100, 200))
                           for half, batch in zip(answers, (messages[0::2], messages[1::2]))
                           for answer, message in zip(half, batch))
        self.assertEqual(answered, {100: 6, 200: 6})


class SharedRegistrationTests(_SharedTestCase):
    """
    Registrations made through one instance, seen by the others.
    """

    async def setUp(self):
        self.redis = await start_redis(self)
        self.first, self.second = await self.start_instances(2, "--lease", SHORT_LEASE)

    async def test_registered_through_one_used_by_another(self):
        """
        A server registered through one instance answers a message sent through the other, right after its setup.
        """
        await start_backend(self, self.first, 100, "PP_1")
        message = data_message("PP_1", "through the other")
        (answer,) = await ask(self.second.port, message)
        self.assert_ack(answer, message, (100,))

    async def test_killed_server_gone_everywhere(self):
        """
        A server killed (its lifeline closed) is removed for every instance: the other answers a type 3 error.
        """
        server = await start_killable_backend(self, self.first, 100, "PP_1")
        await self.wait_lifeline(100)
        kill(server)
        await self.first.wait_for(r"removed server id 100 of privacy policy PP_1: its registration connection closed")
        (answer,) = await ask(self.second.port, data_message("PP_1", "after kill"))
        self.assertEqual(answer.get("type"), 3, answer)
        self.assertIn("no server registered for privacy policy PP_1", answer.get("error"))

    async def test_killed_instance_leases_end(self):
        """
        An instance killed stops renewing its servers' leases: the other instance drops them within a lease.
        """
        fake = FakeServer(self)
        await fake.setup(400, "PP_3", self.first.port)
        await self.first.wait_for(registered_line(400, "PP_3", fake.port))
        await start_backend(self, self.first, 100, "PP_1")
        await self.wait_lifeline(100)
        self.first.kill()

        async def gone():
            answers = [(await ask(self.second.port, data_message(policy, "gone?")))[0] for policy in ("PP_1", "PP_3")]
            return all(answer.get("type") == 3 and "no server registered" in answer.get("error", "")
                       for answer in answers)

        self.assertTrue(await until(gone), "the killed instance's servers are still registered")


class RaceTests(_SharedTestCase):
    """
    Two instances taking setups for the same id at once.
    """

    async def setUp(self):
        self.redis = await start_redis(self)

    async def test_race_for_one_id(self):
        """
        Two hosts registering the same id through two instances at once: one wins, the other is refused, and both instances use the winner.
        """
        first, second = await self.start_instances(2, "--allow-servers", "127.0.0.0/8")
        fakes = [FakeServer(self, host="127.0.0.2"), FakeServer(self, host="127.0.0.3")]
        replies = await gatherResults([
            setup_from(fake.host, instance.port, setup_message(500, "PP_R", fake.port))
            for fake, instance in zip(fakes, (first, second))
        ], consumeErrors=True)
        refused = [json.loads(reply) for reply in replies if reply]
        self.assertEqual(len(refused), 1, replies)
        self.assertEqual(refused[0]["error"], "setup refused: server id 500 is registered from another host")
        winner = fakes[[bool(reply) for reply in replies].index(False)]
        serving = winner.serve(2, naive_ack(500))
        for instance in (first, second):
            message = data_message("PP_R", f"race through {instance.port}")
            (answer,) = await ask(instance.port, message)
            self.assert_ack(answer, message, ("500",))
        received = await serving
        self.assertEqual(len(received), 2)


class RedisOutageTests(_SharedTestCase):
    """
    Redis killed and started again while the instances serve.
    """

    async def setUp(self):
        self.redis = await start_redis(self)
        self.first, self.second = await self.start_instances(2)
        await start_backend(self, self.first, 100, "PP_1")
        await start_backend(self, self.second, 200, "PP_1")

    async def test_outage_and_return(self):
        """
        While Redis is down each instance serves from its last table (with a warning); once it is back, the leases are written back and the rotation is shared again.
        """
        marks = [instance.mark() for instance in (self.first, self.second)]
        await self.redis.kill()
        for n in range(6):
            instance = (self.first, self.second)[n % 2]
            message = data_message("PP_1", f"outage {n}")
            (answer,) = await ask(instance.port, message)
            self.assert_ack(answer, message, (100, 200))
        for instance, mark in zip((self.first, self.second), marks):
            await instance.wait_for(r"Redis at redis://\S+ is unavailable .*serving from the last table seen",
                                    since=mark)
        await self.redis.start()
        for instance, mark in zip((self.first, self.second), marks):
            await instance.wait_for(r"connected to Redis at", since=mark + 1, timeout=30)

        async def written_back():
            return await self.redis.command(b"ZCARD", b"netproxy:reverse:leases") == 2

        self.assertTrue(await until(written_back), "the registrations were not written back to Redis")
        answered = []
        for n in range(6):
            message = data_message("PP_1", f"after outage {n}")
            (answer,) = await ask((self.first, self.second)[n % 2].port, message)
            answered.append(self.assert_ack(answer, message, (100, 200)))
        self.assertEqual(answered, answered[:2] * 3)
        self.assertEqual(sorted(answered[:2]), [100, 200])


class WorkersTests(_SharedTestCase):
    """
    C{--workers 2} with the table in Redis.
    """

    async def test_two_workers_share_the_rotation(self):
        """
        A reverse proxy of two workers sharing Redis serves messages on new connections in one strict rotation.
        """
        self.redis = await start_redis(self)
        proxy = await start_daemon(self, "reverse", "--workers", "2", "--listen", LISTEN, "--registry",
                                   self.redis.url, ready=())
        held = await proxy.wait_for(r"holding \S+ \(port (\d+)\) for 2 workers")
        await proxy.wait_for(r"all 2 workers ready")
        proxy.ports["ReverseFactory"] = int(held.group(1))
        servers = [FakeServer(self) for _ in range(2)]
        for n, server in enumerate(servers):
            await server.setup(800 + n, "PP_W", proxy.port)
            await proxy.wait_for(registered_line(800 + n, "PP_W", server.port))
        serving = [server.serve(4, naive_ack(800 + n)) for n, server in enumerate(servers)]
        answered = []
        for n in range(8):
            message = data_message("PP_W", f"workers {n}")
            (answer,) = await ask(proxy.port, message)
            answered.append(self.assert_ack(answer, message, ("800", "801")))
        await gatherResults(serving, consumeErrors=True)
        self.assertEqual(answered, ["800", "801"] * 4)

