"""
Tests for L{netproxy.instruments}: the text exposition (format 0.0.4) of
counters, gauges and histograms, with labels and escaping, as
Prometheus' own client library parses it.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from netproxy.instruments import CONTENT_TYPE, Counter, Gauge, Histogram, Registry


def render(*metrics):
    """
    :returns: the page of a registry holding C{metrics}, as text.
    """
    registry = Registry()
    for metric in metrics:
        registry.add(metric)
    return registry.render().decode("utf-8")


def body_lines(*metrics):
    """
    :returns: the sample lines of the page of C{metrics}, without comments.
    """
    return [line for line in render(*metrics).splitlines() if not line.startswith("#")]


def parse(text):
    """
    Parse an exposition with prometheus_client, refusing what its lax
    parser would only take as an untyped metric (a sample whose name does
    not belong to the family announced before it).

    :returns: C{{family name: Metric}}, in the order of the page.
    """
    families = {}
    for family in text_string_to_metric_families(text):
        if family.type == "unknown" or family.type == "untyped":
            raise AssertionError(f"untyped family {family.name}: {family.samples}")
        if family.name in families:
            raise AssertionError(f"family {family.name} appears twice")
        families[family.name] = family
    return families


def samples(families):
    """
    :returns: C{{(sample name, sorted label pairs): value}} of every sample
        in C{families}.
    """
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families.values() for sample in family.samples}


class CounterTests(SynchronousTestCase):
    """
    Counters: one sample per label set, with HELP and TYPE first.
    """

    def test_exposition(self):
        """A labelled counter shows HELP, TYPE, then one line per label set, in label order."""
        counter = Counter("jobs_total", "Jobs done.", ("kind", "code"))
        counter.inc("b", "200")
        counter.inc("a", "404", amount=3)
        counter.inc("b", "200")
        self.assertEqual(render(counter), '# HELP jobs_total Jobs done.\n'
                                          '# TYPE jobs_total counter\n'
                                          'jobs_total{kind="a",code="404"} 3\n'
                                          'jobs_total{kind="b",code="200"} 2\n')

    def test_without_labels(self):
        """A counter without labels is one bare sample."""
        counter = Counter("bytes_total", "Bytes.")
        counter.inc(amount=10)
        counter.inc(amount=5)
        self.assertEqual(body_lines(counter), ["bytes_total 15"])

    def test_value_and_total(self):
        """value() reads one label set (0 when never counted); total() sums them all."""
        counter = Counter("jobs_total", "Jobs.", ("kind",))
        counter.inc("a", amount=2)
        counter.inc("b", amount=5)
        self.assertEqual((counter.value("a"), counter.value("b"), counter.value("c"), counter.total()), (2, 5, 0, 7))

    def test_zero_increment_shows(self):
        """An increment by 0 makes its label set appear, at 0."""
        counter = Counter("jobs_total", "Jobs.", ("kind",))
        counter.inc("a", amount=0)
        self.assertEqual(body_lines(counter), ['jobs_total{kind="a"} 0'])

    def test_read_at_render(self):
        """A counter with a reader shows the value read when each page is rendered."""
        counts = {("x",): 1}
        counter = Counter("seen_total", "Seen.", ("what",), read=lambda: dict(counts))
        self.assertEqual(body_lines(counter), ['seen_total{what="x"} 1'])
        counts[("x",)] = 4
        counts[("y",)] = 2
        self.assertEqual(body_lines(counter), ['seen_total{what="x"} 4', 'seen_total{what="y"} 2'])
        self.assertEqual((counter.value("x"), counter.total()), (4, 6))

    def test_wrong_label_count(self):
        """Incrementing with too few or too many label values raises ValueError naming the metric."""
        counter = Counter("jobs_total", "Jobs.", ("kind", "code"))
        error = self.assertRaises(ValueError, counter.inc, "a")
        self.assertIn("jobs_total", str(error))
        self.assertRaises(ValueError, counter.inc, "a", "b", "c")
        self.assertRaises(ValueError, Counter("plain_total", "Plain.").inc, "a")
        self.assertEqual(body_lines(counter), [])


class GaugeTests(SynchronousTestCase):
    """
    Gauges: set, moved up and down, or read when the page is rendered.
    """

    def test_set_inc_dec(self):
        """set() replaces the value; inc() and dec() move it."""
        gauge = Gauge("open", "Open things.", ("side",))
        gauge.set(10, "in")
        gauge.inc("in")
        gauge.inc("in", amount=4)
        gauge.dec("in", amount=2)
        gauge.dec("out")
        self.assertEqual(render(gauge), '# HELP open Open things.\n# TYPE open gauge\n'
                                        'open{side="in"} 13\nopen{side="out"} -1\n')

    def test_read_at_render(self):
        """A gauge with a reader shows the value of the moment the page is rendered, not when it was made."""
        things = []
        gauge = Gauge("things", "Things.", read=lambda: len(things))
        self.assertEqual(body_lines(gauge), ["things 0"])
        things.extend("abc")
        self.assertEqual(body_lines(gauge), ["things 3"])
        self.assertEqual(gauge.value(), 3)

    def test_wrong_label_count(self):
        """set, inc and dec with the wrong number of label values raise ValueError."""
        gauge = Gauge("open", "Open.", ("side",))
        self.assertRaises(ValueError, gauge.set, 1)
        self.assertRaises(ValueError, gauge.set, 1, "a", "b")
        self.assertRaises(ValueError, gauge.inc)
        self.assertRaises(ValueError, gauge.dec, "a", "b")
        self.assertEqual(body_lines(gauge), [])


class HistogramTests(SynchronousTestCase):
    """
    Histograms: cumulative buckets ending with +Inf, then _sum and _count.
    """

    def test_exposition(self):
        """Bucket counts are cumulative, +Inf counts everything, _count equals it, _sum adds the values."""
        histogram = Histogram("wait_seconds", "Waits.", (0.5, 0.1, 2))
        for value in (0.05, 0.2, 0.3, 1.5, 7):
            histogram.observe(value)
        self.assertEqual(render(histogram), '# HELP wait_seconds Waits.\n'
                                            '# TYPE wait_seconds histogram\n'
                                            'wait_seconds_bucket{le="0.1"} 1\n'
                                            'wait_seconds_bucket{le="0.5"} 3\n'
                                            'wait_seconds_bucket{le="2"} 4\n'
                                            'wait_seconds_bucket{le="+Inf"} 5\n'
                                            'wait_seconds_sum 9.05\n'
                                            'wait_seconds_count 5\n')
        self.assertEqual(histogram.count(), 5)

    def test_bound_inclusive(self):
        """A value equal to a bucket's bound counts in that bucket (le is "less than or equal")."""
        histogram = Histogram("wait_seconds", "Waits.", (1, 2))
        histogram.observe(1)
        histogram.observe(2)
        self.assertEqual(body_lines(histogram)[:3], ['wait_seconds_bucket{le="1"} 1', 'wait_seconds_bucket{le="2"} 2',
                                                     'wait_seconds_bucket{le="+Inf"} 2'])

    def test_labels(self):
        """With labels, each label set has its own buckets, sum and count; le comes after the labels."""
        histogram = Histogram("wait_seconds", "Waits.", (1,), labels=("origin",))
        histogram.observe(0.5, "b")
        histogram.observe(3, "a")
        histogram.observe(4, "a")
        self.assertEqual(body_lines(histogram), [
            'wait_seconds_bucket{origin="a",le="1"} 0',
            'wait_seconds_bucket{origin="a",le="+Inf"} 2',
            'wait_seconds_sum{origin="a"} 7',
            'wait_seconds_count{origin="a"} 2',
            'wait_seconds_bucket{origin="b",le="1"} 1',
            'wait_seconds_bucket{origin="b",le="+Inf"} 1',
            'wait_seconds_sum{origin="b"} 0.5',
            'wait_seconds_count{origin="b"} 1',
        ])
        self.assertEqual((histogram.count("a"), histogram.count("b"), histogram.count("c")), (2, 1, 0))

    def test_wrong_label_count(self):
        """Observing with the wrong number of label values raises ValueError, and records nothing."""
        histogram = Histogram("wait_seconds", "Waits.", (1,), labels=("origin",))
        self.assertRaises(ValueError, histogram.observe, 1)
        self.assertRaises(ValueError, histogram.observe, 1, "a", "b")
        self.assertEqual(body_lines(histogram), [])


class FormatTests(SynchronousTestCase):
    """
    Numbers, escaping, and the page as a whole.
    """

    def test_numbers(self):
        """Whole numbers print without a decimal point, others as Python floats, infinities as +Inf and -Inf."""
        gauge = Gauge("value", "A value.", ("case",))
        cases = {"int": 3, "whole float": 3.0, "negative": -2.0, "fraction": 2.5, "small": 1e-05,
                 "huge": 2.0 ** 60, "inf": float("inf"), "-inf": float("-inf"), "zero": 0.0}
        for case, value in cases.items():
            gauge.set(value, case)
        shown = {line.split('"')[1]: line.rpartition(" ")[2] for line in body_lines(gauge)}
        self.assertEqual(shown, {"int": "3", "whole float": "3", "negative": "-2", "fraction": "2.5",
                                 "small": "1e-05", "huge": repr(2.0 ** 60), "inf": "+Inf", "-inf": "-Inf",
                                 "zero": "0"})
        self.assertEqual({case: float(text) for case, text in shown.items()}, {k: float(v) for k, v in cases.items()})

    def test_nan(self):
        """A gauge that is NaN (a ratio of nothing) shows NaN, as the format allows, rather than breaking the page."""
        gauge = Gauge("ratio", "A ratio.", read=lambda: float("nan"))
        self.assertEqual(body_lines(gauge), ["ratio NaN"])

    def test_label_escaping(self):
        """Backslash, double quote and newline in label values are escaped as \\\\, \\" and \\n."""
        counter = Counter("paths_total", "Paths.", ("path",))
        counter.inc('C:\\dir "quoted"\nnext')
        self.assertEqual(body_lines(counter), ['paths_total{path="C:\\\\dir \\"quoted\\"\\nnext"} 1'])

    def test_help_escaping(self):
        """Backslash and newline in help text are escaped; a double quote is not."""
        counter = Counter("paths_total", 'A "path" in C:\\dir\nsecond line.')
        self.assertEqual(render(counter).splitlines()[0], '# HELP paths_total A "path" in C:\\\\dir\\nsecond line.')

    def test_unused_metrics_show_zero(self):
        """Metrics without labels show 0 before anything is counted, so a scrape sees them from the start."""
        lines = body_lines(Counter("events_total", "Events."), Gauge("level", "Level."),
                           Histogram("wait_seconds", "Waits.", (1,)))
        self.assertEqual(lines, ["events_total 0", "level 0", 'wait_seconds_bucket{le="1"} 0',
                                 'wait_seconds_bucket{le="+Inf"} 0', "wait_seconds_sum 0", "wait_seconds_count 0"])

    def test_registry(self):
        """The registry renders its metrics in the order they were added, as UTF-8 ending with a newline."""
        registry = Registry()
        second = Gauge("zzz", "Last added first.")
        self.assertIs(registry.add(second), second)
        registry.add(Counter("aaa_total", "Ünïcode help."))
        second.set(1)
        page = registry.render()
        self.assertIsInstance(page, bytes)
        self.assertTrue(page.endswith(b"\n"))
        text = page.decode("utf-8")
        self.assertLess(text.index("# HELP zzz "), text.index("# HELP aaa_total "))
        self.assertIn("Ünïcode", text)

    def test_content_type(self):
        """The page's content type is the text format's, version 0.0.4, in UTF-8."""
        self.assertEqual(CONTENT_TYPE, b"text/plain; version=0.0.4; charset=utf-8")


class ParserTests(SynchronousTestCase):
    """
    The whole page, as prometheus_client's parser reads it, holds exactly
    what was recorded.
    """

    def test_page(self):
        """Every kind of metric parses with its type and help, and its samples hold the values recorded."""
        requests = Counter("app_requests_total", "Requests by method and status.", ("method", "status"))
        sent = Counter("app_sent_bytes_total", "Bytes sent.")
        level = {"now": 7}
        gauge = Gauge("app_level", "Level, read\nwhen rendered \\ now.", read=lambda: level["now"])
        pending = Gauge("app_pending", "Pending by queue.", ("queue",))
        latency = Histogram("app_latency_seconds", "Latency.", (0.01, 0.1, 1.0), labels=("route",))
        registry = Registry()
        for metric in (requests, sent, gauge, pending, latency):
            registry.add(metric)
        tricky = 'a "b" \\c\nd,e}=f ü'
        requests.inc("GET", "200", amount=5)
        requests.inc("POST", tricky)
        sent.inc(amount=1234)
        pending.set(2.5, "slow")
        pending.set(-1, tricky)
        observed = {"/a": [0.005, 0.01, 0.05, 0.5, 2.0], tricky: [0.2]}
        for route, values in observed.items():
            for value in values:
                latency.observe(value, route)
        level["now"] = 11

        families = parse(registry.render().decode("utf-8"))
        self.assertEqual({name: (family.type, family.documentation) for name, family in families.items()}, {
            "app_requests": ("counter", "Requests by method and status."),
            "app_sent_bytes": ("counter", "Bytes sent."),
            "app_level": ("gauge", "Level, read\nwhen rendered \\ now."),
            "app_pending": ("gauge", "Pending by queue."),
            "app_latency_seconds": ("histogram", "Latency."),
        })
        expected = {
            ("app_requests_total", (("method", "GET"), ("status", "200"))): 5,
            ("app_requests_total", (("method", "POST"), ("status", tricky))): 1,
            ("app_sent_bytes_total", ()): 1234,
            ("app_level", ()): 11,
            ("app_pending", (("queue", "slow"),)): 2.5,
            ("app_pending", (("queue", tricky),)): -1,
        }
        for route, values in observed.items():
            for bound in ("0.01", "0.1", "1", "+Inf"):
                limit = float(bound)
                expected["app_latency_seconds_bucket", (("le", bound), ("route", route))] = sum(
                    value <= limit for value in values)
            expected["app_latency_seconds_sum", (("route", route),)] = sum(values)
            expected["app_latency_seconds_count", (("route", route),)] = len(values)
        got = samples(families)
        self.assertEqual(got.keys(), expected.keys())
        for key, value in expected.items():
            self.assertAlmostEqual(got[key], value, places=9, msg=key)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.text(max_size=20), st.floats(min_value=0, max_value=1e6)), max_size=10))
    def test_any_label_value(self, observations):
        """Any label values and observations parse back to the recorded values and consistent buckets."""
        counter = Counter("any_total", "Any.", ("value",))
        histogram = Histogram("any_seconds", "Any.", (0.5, 10, 1000), labels=("value",))
        recorded = {}
        for label, value in observations:
            counter.inc(label)
            histogram.observe(value, label)
            recorded.setdefault(label, []).append(value)
        registry = Registry()
        registry.add(counter)
        registry.add(histogram)
        families = parse(registry.render().decode("utf-8"))
        got = samples(families)
        for label, values in recorded.items():
            self.assertEqual(got["any_total", (("value", label),)], len(values))
            buckets = [got["any_seconds_bucket", (("le", bound), ("value", label))]
                       for bound in ("0.5", "10", "1000", "+Inf")]
            self.assertEqual(buckets, [sum(v <= bound for v in values) for bound in (0.5, 10, 1000, float("inf"))])
            self.assertEqual(got["any_seconds_count", (("value", label),)], len(values))
            self.assertAlmostEqual(got["any_seconds_sum", (("value", label),)], sum(values), delta=1e-6)
        self.assertEqual(len(got), 7 * len(recorded))
