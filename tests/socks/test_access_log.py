"""
Tests for L{netproxy.socks.access_log}: one line per request, with client,
user, destination, bytes each way and seconds.
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from netproxy.socks.access_log import SocksAccessLog, format_access_line, open_access_log
from netproxy.worker_options import Worker

EVENT = {
    "log_time": 1795280920.0, "client": "127.0.0.1", "user": "alice", "command": "CONNECT",
    "destination": "example.com:443", "address": "93.184.216.34:443", "reply": 0, "received": 517, "sent": 4312,
    "seconds": 1.2044,
}


def report(access_log):
    """
    Report L{EVENT}'s request to C{access_log}.
    """
    access_log.finished("127.0.0.1", "alice", "CONNECT", "example.com:443", "93.184.216.34:443", 0, 517, 4312,
                        1.2044)


class FormatTests(SynchronousTestCase):
    """
    The line's fields.
    """

    def test_line(self):
        """A tunnel's line has every field in order."""
        self.assertEqual(format_access_line(EVENT), "127.0.0.1 alice [21/Nov/2026:17:08:40 +0000] CONNECT "
                                                    "example.com:443 93.184.216.34:443 0 517 4312 1.204\n")

    def test_refusal(self):
        """A refusal has no user or address: dashes."""
        line = format_access_line({**EVENT, "user": None, "address": None, "reply": 2, "received": 0, "sent": 0})
        self.assertEqual(line.split(" ")[:2], ["127.0.0.1", "-"])
        self.assertIn(" example.com:443 - 2 0 0 ", line)

    def test_escaped(self):
        """A user name cannot break the line."""
        line = format_access_line({**EVENT, "user": "a\nb"})
        self.assertEqual(line.count("\n"), 1)
        self.assertIn("a\\x0ab", line)

    def test_worker(self):
        """With several workers, the line names the worker."""
        self.assertTrue(format_access_line({**EVENT, "worker": 2}).endswith(" 1.204 worker=2\n"))


class SocksAccessLogTests(SynchronousTestCase):
    """
    Access events go to the log's observers only.
    """

    def test_disabled(self):
        """Without an observer nothing is published."""
        access_log = SocksAccessLog()
        report(access_log)
        self.assertFalse(access_log.enabled)

    def test_event(self):
        """An observer gets the request's fields; one worker of one is not named."""
        events = []
        access_log = SocksAccessLog()
        access_log.add_observer(events.append)
        access_log.worker = Worker(0, 1, ((4, "INET"),), (0, 3), "/run/x")
        report(access_log)
        [event] = events
        self.assertEqual((event["user"], event["sent"], event["worker"]), ("alice", 4312, None))

    def test_worker_named(self):
        """One worker of several is named."""
        events = []
        access_log = SocksAccessLog()
        access_log.add_observer(events.append)
        access_log.worker = Worker(1, 2, ((4, "INET"),), (0, 3), "/run/x")
        report(access_log)
        self.assertEqual(events[0]["worker"], 1)

    def test_file(self):
        """open_access_log on a path appends lines there."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "socks.log")
        access_log = SocksAccessLog()
        access_log.add_observer(open_access_log(path))
        report(access_log)
        report(access_log)
        with open(path, encoding="utf-8") as log:
            lines = log.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("CONNECT example.com:443 93.184.216.34:443 0 517 4312", lines[0])
