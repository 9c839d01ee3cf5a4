"""
Tests for L{netproxy.stalls}: a timer's lateness on a L{Clock} read as the
reactor's stalls, and the metrics that show them.
"""

from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.instruments import Registry
from netproxy.stalls import INTERVAL, THRESHOLDS, StallMonitor, stall_metrics
from tests.test_instruments import parse


class StallMonitorTests(SynchronousTestCase):
    """
    A running monitor keeps one timer on the clock and records how late
    each one runs.
    """

    def setUp(self):
        self.clock = Clock()
        self.monitor = StallMonitor(self.clock)

    def test_not_running(self):
        """A monitor not started schedules nothing and has seen no stall."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.monitor.longest, 0)
        self.assertEqual(self.monitor.stalls, dict.fromkeys(THRESHOLDS, 0))

    def test_on_time(self):
        """Timers that run when due are no stall, and one timer at a time is pending."""
        self.monitor.startService()
        self.clock.pump([INTERVAL] * 100)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.monitor.longest, 0)
        self.assertEqual(sum(self.monitor.stalls.values()), 0)

    def test_stall(self):
        """A timer that runs 0.3 s late is a 0.3 s stall, counted over 10 ms, 50 ms and 200 ms but not 1 s."""
        self.monitor.startService()
        self.clock.advance(INTERVAL + 0.3)
        self.assertAlmostEqual(self.monitor.longest, 0.3)
        self.assertEqual(self.monitor.stalls, {0.01: 1, 0.05: 1, 0.2: 1, 1.0: 0})

    def test_counted_once(self):
        """A long stall is one stall, not one for every check it held back; the next timers are on time."""
        self.monitor.startService()
        self.clock.advance(2.0)
        self.clock.pump([INTERVAL] * 10)
        self.assertEqual(self.monitor.stalls, {0.01: 1, 0.05: 1, 0.2: 1, 1.0: 1})
        self.assertAlmostEqual(self.monitor.longest, 2.0 - INTERVAL)

    def test_longest_kept(self):
        """The longest stall stays the longest when shorter ones follow."""
        self.monitor.startService()
        self.clock.advance(INTERVAL + 0.1)
        self.clock.advance(INTERVAL + 0.03)
        self.assertAlmostEqual(self.monitor.longest, 0.1)
        self.assertEqual(self.monitor.stalls[0.05], 1)
        self.assertEqual(self.monitor.stalls[0.01], 2)

    def test_at_threshold(self):
        """A stall of exactly a threshold is not over it."""
        self.monitor.record(0.05)
        self.assertEqual(self.monitor.stalls, {0.01: 1, 0.05: 0, 0.2: 0, 1.0: 0})

    def test_clock_stepped_back(self):
        """A timer that runs before it was due (the clock stepped back) is no stall."""
        self.monitor.record(-3600.0)
        self.assertEqual(self.monitor.longest, 0)
        self.assertEqual(sum(self.monitor.stalls.values()), 0)

    def test_stopped(self):
        """Stopping cancels the pending timer; starting again resumes the checks with what was recorded."""
        parent = MultiService()
        self.monitor.setServiceParent(parent)
        parent.startService()
        self.clock.advance(INTERVAL + 0.1)
        parent.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertAlmostEqual(self.monitor.longest, 0.1)
        parent.startService()
        self.clock.advance(INTERVAL)
        self.assertEqual(self.monitor.stalls[0.01], 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_stop_twice(self):
        """Stopping a monitor that was never started, or twice, is harmless."""
        self.monitor.stopService()
        self.monitor.startService()
        self.monitor.stopService()
        self.monitor.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_own_interval_and_thresholds(self):
        """The interval and thresholds can be chosen; thresholds are kept in order."""
        monitor = StallMonitor(self.clock, interval=1.0, thresholds=[5.0, 0.5])
        monitor.startService()
        self.clock.advance(0.9)
        self.assertEqual(monitor.longest, 0)
        self.clock.advance(1.1)
        self.assertAlmostEqual(monitor.longest, 1.0)
        self.assertEqual(monitor.stalls, {0.5: 1, 5.0: 0})
        monitor.stopService()

    def test_bad_values(self):
        """An interval or threshold that is zero, negative or NaN is refused."""
        for interval, thresholds in [(0, THRESHOLDS), (-1, THRESHOLDS), (float("nan"), THRESHOLDS),
                                     (INTERVAL, [0.05, 0]), (INTERVAL, [float("nan")])]:
            self.assertRaises(ValueError, StallMonitor, self.clock, interval, thresholds)


class StallMetricsTests(SynchronousTestCase):
    """
    The gauge and counter read the monitor when the page is rendered.
    """

    def setUp(self):
        self.clock = Clock()
        self.monitor = StallMonitor(self.clock)
        self.registry = Registry()
        for metric in stall_metrics(self.monitor):
            self.registry.add(metric)

    def test_from_the_start(self):
        """Before any stall the longest reads 0 and every threshold has a sample at 0."""
        families = parse(self.registry.render().decode("utf-8"))
        self.assertEqual(families["netproxy_reactor_longest_stall_seconds"].type, "gauge")
        self.assertEqual([sample.value for sample in families["netproxy_reactor_longest_stall_seconds"].samples],
                         [0])
        counter = families["netproxy_reactor_stalls"]
        self.assertEqual(counter.type, "counter")
        self.assertEqual({sample.labels["over"]: sample.value for sample in counter.samples},
                         {"0.01": 0, "0.05": 0, "0.2": 0, "1": 0})

    def test_after_a_stall(self):
        """A stall shows as the longest and in every threshold it went over."""
        self.monitor.startService()
        self.clock.advance(INTERVAL + 0.25)
        families = parse(self.registry.render().decode("utf-8"))
        longest, = families["netproxy_reactor_longest_stall_seconds"].samples
        self.assertAlmostEqual(longest.value, 0.25)
        counter = families["netproxy_reactor_stalls"]
        self.assertEqual({sample.labels["over"]: sample.value for sample in counter.samples},
                         {"0.01": 1, "0.05": 1, "0.2": 1, "1": 0})
        self.monitor.stopService()
