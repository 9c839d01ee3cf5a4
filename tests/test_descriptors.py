"""
Tests for L{netproxy.descriptors}: the soft open-file limit raised for the
configured connections, and the connections lowered to what the hard limit
holds, with injected C{getrlimit}/C{setrlimit}.
"""

import resource

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.descriptors import RESERVED, DescriptorLimit, descriptors_needed
from netproxy.http.pool import ConnectionPool


class FakeLimits:
    """
    An C{RLIMIT_NOFILE} of a pretend process.

    :ivar soft: the soft limit.
    :ivar hard: the hard limit.
    :ivar refuse: an exception C{setrlimit} raises, or L{None}.
    :ivar calls: the arguments C{setrlimit} was called with.
    """

    def __init__(self, soft, hard, refuse=None):
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.calls = []

    def getrlimit(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which, limits):
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        if self.refuse is not None:
            raise self.refuse
        soft, hard = limits
        if hard != self.hard or (self.hard != resource.RLIM_INFINITY and soft > self.hard):
            raise ValueError("not allowed to raise maximum limit")
        self.soft = soft


class DescriptorLimitTests(SynchronousTestCase):
    """
    L{DescriptorLimit.fit} raises the soft limit as far as needed, never
    lowers it, and lowers the connections when the hard limit is too low.
    """

    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def fit(self, limits, connections, per_connection=3, fixed=0):
        return DescriptorLimit(limits.getrlimit, limits.setrlimit).fit(connections, per_connection, fixed)

    def messages(self, level):
        return [formatEvent(e) for e in self.events if e["log_level"] == level]

    def test_formula(self):
        """Connections times descriptors per connection, plus the fixed ones, plus RESERVED."""
        self.assertEqual(descriptors_needed(5000, 3, 1024), 5000 * 3 + 1024 + RESERVED)
        self.assertEqual(RESERVED, 64)

    def test_raised_to_what_is_needed(self):
        """Under a soft limit of 1024, --max-connections 5000 raises it to 15064, keeping the hard limit."""
        limits = FakeLimits(1024, 524288)
        self.assertEqual(self.fit(limits, 5000), 5000)
        self.assertEqual(limits.calls, [(15064, 524288)])
        self.assertEqual(limits.soft, 15064)
        self.assertEqual(self.messages(LogLevel.info),
                         ["raised the open file limit from 1024 to 15064 for --max-connections 5000 "
                          "(3 per connection + 64)"])

    def test_unlimited_hard_limit(self):
        """An unlimited hard limit lets the soft limit go to exactly what is needed."""
        limits = FakeLimits(1024, resource.RLIM_INFINITY)
        self.assertEqual(self.fit(limits, 5000, 2, 10), 5000)
        self.assertEqual(limits.soft, 5000 * 2 + 10 + RESERVED)

    def test_enough_already(self):
        """A soft limit that holds the connections is left alone, and logged."""
        limits = FakeLimits(20000, 20000)
        self.assertEqual(self.fit(limits, 1024), 1024)
        self.assertEqual(limits.calls, [])
        self.assertEqual(self.messages(LogLevel.info),
                         ["open file limit 20000 holds --max-connections 1024 (3136 needed)"])

    def test_never_lowered(self):
        """A soft limit higher than needed is not lowered, unlimited included."""
        for soft in (100000, resource.RLIM_INFINITY):
            limits = FakeLimits(soft, resource.RLIM_INFINITY)
            self.assertEqual(self.fit(limits, 10), 10)
            self.assertEqual(limits.calls, [])

    def test_hard_limit_too_low(self):
        """When the hard limit cannot hold them, the soft limit goes to it and fewer connections are served, with a warning."""
        limits = FakeLimits(256, 1024)
        self.assertEqual(self.fit(limits, 5000, 3, 100), (1024 - 100 - RESERVED) // 3)
        self.assertEqual(limits.soft, 1024)
        [warning] = self.messages(LogLevel.warn)
        self.assertEqual(warning,
                         "the open file limit 1024 (hard limit 1024) holds 286 connections, not --max-connections "
                         "5000: serving at most 286 at once; raise the hard limit to 15164 (LimitNOFILE= in the "
                         "systemd unit, ulimit -Hn in a shell)")

    def test_fixed_shrinks_with_connections(self):
        """A short limit shares itself out: the HTTP proxy's pool of 1024 takes one per connection, not all."""
        self.assertEqual(self.fit(FakeLimits(1024, 1024), 1024, 3, 1024), (1024 - RESERVED) // 4)
        self.assertEqual(self.fit(FakeLimits(1024, 2048), 1024, 3, 1024), (2048 - RESERVED) // 4)
        self.assertEqual(self.fit(FakeLimits(1024, 8192), 4096, 3, 1024), (8192 - 1024 - RESERVED) // 3)

    def test_at_least_one(self):
        """However low the hard limit, at least one connection is served."""
        self.assertEqual(self.fit(FakeLimits(16, 16), 100), 1)

    def test_setrlimit_refused(self):
        """A refused setrlimit is a warning; the soft limit in force decides the connections."""
        limits = FakeLimits(1024, resource.RLIM_INFINITY, refuse=ValueError("current limit exceeds maximum limit"))
        self.assertEqual(self.fit(limits, 5000, 1), 1024 - RESERVED)
        warnings = self.messages(LogLevel.warn)
        self.assertEqual(warnings[0], "could not raise the open file limit from 1024 to 5064: "
                                      "current limit exceeds maximum limit")
        self.assertIn("serving at most 960 at once", warnings[1])


class RoleDescriptorTests(SynchronousTestCase):
    """
    Each role's options say what one connection takes.
    """

    def test_per_connection(self):
        """http takes 3 per connection, relay and reverse 2, the others 1."""
        expected = {"http": 3, "relay": 2, "reverse": 2, "server": 1, "ack": 1, "upper": 1}
        found = {name: options.descriptors_per_connection
                 for name, _, options, _ in tap.Options.subCommands if name in expected}
        self.assertEqual(found, expected)

    def test_http_pool(self):
        """The HTTP proxy's fixed descriptors are its connection pool's idle connections."""
        self.assertEqual(tap.HttpOptions.descriptors_fixed, ConnectionPool(None).max_idle)
