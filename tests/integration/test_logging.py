"""
End-to-end tests of C{twistd --logger netproxy.log_observers.json_observer} and
C{journal_observer}: a real C{twistd netproxy relay} whose standard output
is read line by line.
"""

import json
import os
import re
from datetime import datetime

from twisted.trial.unittest import TestCase

from tests.integration.daemon import LISTEN, raw_exchange, relay_request, start_daemon

JSON_LOGGER = ("--logger", "netproxy.log_observers.json_observer")
JOURNAL_LOGGER = ("--logger", "netproxy.log_observers.journal_observer")
KEYS = ["time", "level", "namespace", "message", "format", "fields"]
PEER = re.compile(r"^127\.0\.0\.1:\d+$")


def parse_lines(output):
    """
    :param output: a daemon's standard output, as bytes.
    :returns: each line parsed as strict JSON.
    :raises ValueError: if a line is not a JSON object.
    """

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = output.decode("utf-8")
    if not text.endswith("\n"):
        raise ValueError(f"output does not end with a newline: {text[-200:]!r}")
    records = []
    for line in text[:-1].split("\n"):
        record = json.loads(line, parse_constant=refuse)
        if not isinstance(record, dict):
            raise ValueError(f"not a JSON object: {line!r}")
        records.append(record)
    return records


class JSONLoggerTests(TestCase):
    """
    C{twistd --logger netproxy.log_observers.json_observer -n netproxy relay}.
    """

    timeout = 60

    async def start_relay(self, *twistd_args):
        """
        Start a relay blocking 127.0.0.1:7777 with C{twistd_args}, and wait
        for its JSON listening event.

        :returns: the L{Daemon} and its port.
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", "127.0.0.1:7777",
                                   ready=(), twistd_args=twistd_args)
        match = await relay.wait_for(r'"message": "RelayFactory starting on (\d+)"')
        return relay, int(match.group(1))

    async def test_events(self):
        """
        Every line of standard output is a JSON object; start-up, listening,
        request, refusal and shutdown events appear in order with their fields.
        """
        relay, port = await self.start_relay(*JSON_LOGGER)
        reply = await raw_exchange(port, relay_request(7777))
        self.assertEqual(reply.data, b"Error, not allowed address")
        await relay.wait_for(r'"message": "blocked request from ')
        self.assertTrue(await relay.stop())
        self.assertEqual(relay.output.err, b"")
        records = parse_lines(relay.output.out)
        for record in records:
            self.assertEqual(list(record)[:6], KEYS, record)
            self.assertIsInstance(record["fields"], dict)
        times = [datetime.fromisoformat(r["time"]) for r in records]
        self.assertTrue(all(r["time"].endswith("Z") for r in records))
        self.assertEqual(times, sorted(times))

        by_format = {r["format"]: r for r in records if r["format"]}
        starting = by_format["twistd {version} ({exe} {pyVersion}) starting up."]
        self.assertEqual(starting["level"], "info")
        self.assertEqual(sorted(starting["fields"]), ["exe", "pyVersion", "version"])
        self.assertIn(starting["fields"]["version"], starting["message"])
        self.assertIn("reactor", by_format["reactor class: {reactor}."]["fields"])

        [listening] = [r for r in records if r["message"] == f"RelayFactory starting on {port}"]
        self.assertEqual((listening["namespace"], listening["level"], listening["format"]),
                         ("log_legacy", "info", None))

        received = by_format["received request from {peer} for {destination} ({size} bytes)"]
        self.assertEqual((received["level"], received["namespace"]), ("info", "netproxy.message.relay.RelayProtocol"))
        self.assertRegex(received["fields"].pop("peer"), PEER)
        self.assertEqual(received["fields"], {"destination": "127.0.0.1:7777", "size": 4})

        blocked = by_format["blocked request from {peer} to {destination} by rule {rule}"]
        self.assertEqual(blocked["level"], "warn")
        self.assertRegex(blocked["fields"].pop("peer"), PEER)
        self.assertEqual(blocked["fields"], {"destination": "127.0.0.1:7777", "rule": "127.0.0.1:7777"})
        self.assertRegex(blocked["message"],
                         r"^blocked request from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:7777 by rule 127\.0\.0\.1:7777$")

        order = [records.index(r) for r in (starting, listening, received, blocked)]
        self.assertEqual(order, sorted(order))
        self.assertEqual(records[-1]["message"], "Server Shut Down.")
        self.assertIn("Received SIGTERM, shutting down.", [r["message"] for r in records])

    async def test_logfile_ignored(self):
        """
        With --logger, twistd's --logfile has no effect: the JSON lines still
        go to standard output and no log file is made.
        """
        relay, port = await self.start_relay(*JSON_LOGGER, "--logfile", "twistd.log")
        self.assertTrue(await relay.stop())
        self.assertIn(f"RelayFactory starting on {port}", [r["message"] for r in parse_lines(relay.output.out)])
        self.assertFalse(os.path.exists(os.path.join(relay.directory, "twistd.log")))


class JournalLoggerTests(TestCase):
    """
    C{twistd --logger netproxy.log_observers.journal_observer -n netproxy relay}.
    """

    timeout = 60

    async def test_priorities(self):
        """
        Every line starts with a syslog priority and no timestamp; a refusal is
        a warning (4), a request info (6).
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", "127.0.0.1:7777",
                                   ready=(), twistd_args=JOURNAL_LOGGER)
        match = await relay.wait_for(r"^<6>\[-\] RelayFactory starting on (\d+)$")
        reply = await raw_exchange(int(match.group(1)), relay_request(7777))
        self.assertEqual(reply.data, b"Error, not allowed address")
        await relay.wait_for(r"^<4>\[netproxy\.message\.relay\.RelayProtocol#warn\] blocked request from 127\.0\.0\.1:\d+ "
                             r"to 127\.0\.0\.1:7777 by rule 127\.0\.0\.1:7777$")
        await relay.wait_for(r"^<6>\[netproxy\.message\.relay\.RelayProtocol#info\] received request from 127\.0\.0\.1:\d+ "
                             r"for 127\.0\.0\.1:7777 \(4 bytes\)$")
        self.assertTrue(await relay.stop())
        lines = relay.output.out.decode("utf-8").splitlines()
        self.assertGreater(len(lines), 4)
        for line in lines:
            self.assertRegex(line, r"^<[0-7]>\[[^\]]+\] ")
        self.assertRegex(lines[-1], r"^<6>\[twisted\.[\w.]+AppLogger#info\] Server Shut Down\.$")
