# -*- test-case-name: tests.test_instruments -*-
"""
Metrics in the Prometheus text exposition format (version 0.0.4): counters,
gauges and histograms with labels, and the page that shows them.

Small on purpose: updating a metric is a dictionary operation or two, cheap
enough for every request of the proxy's hot path, and a gauge may read its
value from the object it describes when the page is rendered, so nothing has
to be kept in step.  No dependency beyond the standard library.
"""

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from math import isinf, isnan
from typing import Any, TypeVar

# A metric's value for one label set: labels in the order of its names.
Labels = tuple[object, ...]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number_text(value: float) -> str:
    """
    :returns: C{value} as the exposition format writes a sample's value:
        whole numbers without a fraction, C{NaN}, C{+Inf}, C{-Inf}.
    """
    if isnan(value):
        return "NaN"
    if isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Labels, extra: Iterable[tuple[str, object]] = ()) -> str:
    pairs = [*zip(names, values), *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in pairs) + "}"


class _Metric:
    """
    A metric kept here, or read when rendered: C{read}, a function
    returning the value (without labels) or C{{labels: value}} (with), for
    values another object keeps anyway.
    """

    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (),
                 read: Callable[[], Any] | None = None) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labels)
        self._values: dict[Labels, Any] = {}
        self._read = read

    def _key(self, labels: Labels) -> Labels:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(labels)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._samples()

    def value(self, *labels: object) -> float:
        values = self._current()
        return values.get(tuple(labels), 0)

    def total(self) -> float:
        """
        :returns: the sum over every label set.
        """
        return sum(self._current().values())

    def _current(self) -> Mapping[Labels, Any]:
        if self._read is None:
            # One without labels shows 0 until first counted, so a scrape
            # sees it from the start.
            return self._values if self._values or self.labelnames else {(): 0}
        read = self._read()
        return read if self.labelnames else {(): read}

    def _samples(self) -> Iterator[str]:
        for key, value in sorted(self._current().items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {number_text(value)}"


class Counter(_Metric):
    """
    A count that only goes up, kept here or read when rendered.  Labels are
    given positionally, in the order of C{labels}.
    """

    kind = "counter"

    def inc(self, *labels: object, amount: float = 1) -> None:
        key = labels if len(labels) == len(self.labelnames) else self._key(labels)
        self._values[key] = self._values.get(key, 0) + amount


class Gauge(_Metric):
    """
    A value that goes up and down: set it, or have it read when rendered.
    """

    kind = "gauge"

    def set(self, value: float, *labels: object) -> None:
        self._values[self._key(labels)] = value

    def inc(self, *labels: object, amount: float = 1) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0) + amount

    def dec(self, *labels: object, amount: float = 1) -> None:
        self.inc(*labels, amount=-amount)


class Histogram(_Metric):
    """
    Observations counted in cumulative buckets (upper bounds, in seconds for
    latencies), with their sum and count.
    """

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))

    def observe(self, value: float, *labels: object) -> None:
        key = self._key(labels)
        state = self._values.get(key)
        if state is None:
            state = self._values[key] = [[0] * (len(self.buckets) + 1), 0.0]
        counts = state[0]
        counts[bisect_left(self.buckets, value)] += 1
        state[1] += value

    def count(self, *labels: object) -> int:
        state = self._values.get(tuple(labels))
        return 0 if state is None else sum(state[0])

    def _samples(self) -> Iterator[str]:
        values = self._values
        if not values and not self.labelnames:
            values = {(): [[0] * (len(self.buckets) + 1), 0.0]}
        for key, (counts, total) in sorted(values.items()):
            cumulative = 0
            for bound, count in zip((*self.buckets, float("inf")), counts):
                cumulative += count
                yield f"{self.name}_bucket{_labels(self.labelnames, key, [('le', number_text(bound))])} {cumulative}"
            yield f"{self.name}_sum{_labels(self.labelnames, key)} {number_text(total)}"
            yield f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}"


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """
    The metrics of one daemon, rendered in the order they were added.
    """

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _M) -> _M:
        """
        :returns: C{metric}, added.
        """
        self._metrics.append(metric)
        return metric

    def render(self) -> bytes:
        """
        :returns: the exposition, as UTF-8 bytes.
        """
        lines = [line for metric in self._metrics for line in metric.lines()]
        return ("\n".join(lines) + "\n").encode("utf-8")
