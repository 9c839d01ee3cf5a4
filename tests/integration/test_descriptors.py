"""
End-to-end tests of L{netproxy.descriptors}: real C{twistd} started under a
lowered C{RLIMIT_NOFILE} raises its soft limit for C{--max-connections}, or
serves fewer connections, in order, when the hard limit cannot hold them.
"""

import sys

from twisted.trial.unittest import TestCase

from tests.integration.daemon import LISTEN, bounded, start_daemon
from tests.integration.http_client import PROXY_READY
from tests.integration.test_connections import connect_from

# Runs the daemon's command line under an open-file limit of SOFT:HARD.
_LIMIT = ("import os, resource, sys; "
          "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
          "os.execv(sys.argv[3], sys.argv[3:])")


def with_limit(soft, hard):
    """
    :returns: a C{wrapper} for L{start_daemon} that starts the daemon with
        an open-file limit of C{soft} and C{hard}.
    """
    return (sys.executable, "-c", _LIMIT, str(soft), str(hard))


def open_files_limit(pid):
    """
    :returns: the soft and hard open-file limits of process C{pid}, as
        Linux's /proc shows them.
    """
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open file limit for {pid}")


class DescriptorLimitTests(TestCase):
    """
    A role fits its open-file limit to --max-connections at start-up.
    """

    timeout = 60

    def setUp(self):
        if not sys.platform.startswith("linux"):
            self.skipTest("reads the limits from Linux's /proc")

    async def test_soft_limit_raised(self):
        """Under a soft limit of 1024, http --max-connections 5000 raises it to 16088 and logs it."""
        proxy = await start_daemon(self, "http", "--listen", LISTEN, "--no-cache", "--max-connections", "5000",
                                   ready=PROXY_READY, wrapper=with_limit(1024, 20000))
        await proxy.wait_for(r"raised the open file limit from 1024 to 16088 for --max-connections 5000 "
                             r"\(3 per connection \+ 1088\)")
        self.assertEqual(open_files_limit(proxy.pid), (16088, 20000))

    async def test_hard_limit_too_low(self):
        """Under a hard limit of 100, ack serves 36 connections at once and refuses the next in order, with a warning."""
        ack = await start_daemon(self, "ack", "--listen", LISTEN, "--max-connections", "1000",
                                 "--max-connections-per-client", "1000", wrapper=with_limit(50, 100))
        await ack.wait_for(r"the open file limit 100 \(hard limit 100\) holds 36 connections, not "
                           r"--max-connections 1000: serving at most 36 at once; raise the hard limit to 1064")
        for _ in range(36):
            client = await connect_from(self, "127.0.0.1", ack.port, b"x")
            self.assertEqual(await client.wait_for_bytes(4), b"DONE")
        refused = await connect_from(self, "127.0.0.1", ack.port, b"x")
        await bounded(refused.lost)
        self.assertEqual(refused.received, b"")
        await ack.wait_for(r"refusing connection from 127\.0\.0\.1:\d+: 36 connections already open$")
        self.assertEqual(open_files_limit(ack.pid), (100, 100))
