# -*- test-case-name: tests.test_worker_metrics -*-
"""
Metrics for a role served by several workers: each worker writes its own
page (L{netproxy.instruments.Registry.render}) to a file in a directory the
main process made for them, once a second; the worker a client asks renders
its own page live and adds the others' files to it, so that C{/metrics}
shows the whole service whichever worker answers, plus a few series per
worker (a C{worker} label) to tell them apart.

The truth of each worker's counts lives in its own memory; the files are
copies at most L{SNAPSHOT_INTERVAL} old.  When a worker dies, the main
process adds its last counters to the file of the dead (L{retire}), so that
totals do not go down when its successor starts again from zero: what it
counted in its last second is lost.  A file is replaced whole (written
aside, then renamed), so a reader never sees half of one.

Samples are merged by name and labels: counters and histograms, and gauges
by default, are summed; L{MERGE} names the gauges that are not (the cache's
size is the one shared store's, the same in every worker).
"""

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from netproxy.escaping import Logger
from netproxy.instruments import number_text

#: Seconds between two snapshots of a worker's page.
SNAPSHOT_INTERVAL = 1.0
#: The file of the counts of workers that died.
DEAD = "dead.prom"
#: The main process's own file (restarts).
MAIN = "main.prom"

#: How gauges that are not summed are merged: "own" keeps the answering
#: worker's value (state they all share), min and max what their names say.
MERGE: Mapping[str, str] = {
    "netproxy_start_time_seconds": "min",
    "netproxy_cache_stored_bytes": "own",
    "netproxy_cache_entries": "own",
    "netproxy_reactor_longest_stall_seconds": "max",
}
#: Samples shown once per worker too, with a C{worker} label: the family
#: they are shown as, and its help.
PER_WORKER: Mapping[str, tuple[str, str]] = {
    "netproxy_http_client_connections": ("netproxy_worker_client_connections", "Open client connections, by worker."),
    "netproxy_http_requests_total": ("netproxy_worker_requests_total", "Requests finished, by worker."),
    "netproxy_worker_resident_memory_bytes": ("netproxy_worker_resident_memory_bytes",
                                              "Resident memory of each worker process."),
}
_RSS = "netproxy_worker_resident_memory_bytes"
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")


@dataclass
class Family:
    """
    One metric's lines of a page: its help, type, and samples by name and labels.
    """

    help: str = ""
    type: str = "untyped"
    samples: dict[tuple[str, str], float] = field(default_factory=dict)


def parse(text: str) -> dict[str, Family]:
    """
    Read a page in the Prometheus text format as this project writes it.
    Lines that are not understood are skipped: a file is the project's
    own, but may be cut short by a full disk.

    :returns: its families by name, in page order.
    """
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4:
                continue
            current = families.setdefault(parts[2], Family())
            if parts[1] == "HELP":
                current.help = parts[3]
            else:
                current.type = parts[3]
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None or current is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        current.samples[(match.group(1), match.group(2) or "")] = value
    return families


def merge(own: Mapping[str, Family], others: Iterable[Mapping[str, Family]]) -> dict[str, Family]:
    """
    :returns: C{own}'s families with the C{others}' samples merged in (see
        L{MERGE}); families only others have come after.
    """
    merged = {name: Family(family.help, family.type, dict(family.samples)) for name, family in own.items()}
    for page in others:
        for name, family in page.items():
            target = merged.setdefault(name, Family(family.help, family.type))
            how = MERGE.get(name, "sum") if family.type == "gauge" else "sum"
            for key, value in family.samples.items():
                if key not in target.samples:
                    target.samples[key] = value
                elif how == "sum":
                    target.samples[key] += value
                elif how == "min":
                    target.samples[key] = min(target.samples[key], value)
                elif how == "max":
                    target.samples[key] = max(target.samples[key], value)
    return merged


def render(families: Mapping[str, Family]) -> bytes:
    """
    :returns: C{families} as a page.
    """
    lines = []
    for name, family in families.items():
        lines += [f"# HELP {name} {family.help}", f"# TYPE {name} {family.type}"]
        lines += [f"{sample}{labels} {number_text(value)}" for (sample, labels), value in family.samples.items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def per_worker(pages: Mapping[int, Mapping[str, Family]]) -> dict[str, Family]:
    """
    :param pages: each live worker's page, by index.
    :returns: the L{PER_WORKER} families, one sample per worker.
    """
    families: dict[str, Family] = {}
    for index, page in sorted(pages.items()):
        for source, (name, help_text) in PER_WORKER.items():
            family = page.get(source)
            if family is None:
                continue
            target = families.setdefault(name, Family(help_text, "counter" if name.endswith("_total") else "gauge"))
            target.samples[(name, f'{{worker="{index}"}}')] = sum(family.samples.values())
    return families


def resident_memory() -> float:
    """
    :returns: this process's resident memory in bytes, or 0 where
        C{/proc} cannot tell.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return 0.0


def snapshot_path(directory: str, index: int) -> str:
    """
    :returns: the file worker C{index} writes its page to.
    """
    return os.path.join(directory, f"worker-{index}.prom")


def write_page(path: str, page: bytes) -> None:
    """
    Replace the file at C{path} with C{page} whole.

    :raises OSError: when it cannot be written.
    """
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "wb") as file:
        file.write(page)
    os.replace(temp, path)


def _read(path: str) -> dict[str, Family]:
    try:
        with open(path, "rb") as file:
            return parse(file.read().decode("utf-8", "replace"))
    except OSError:
        return {}


class WorkerPages(Service):
    """
    A worker's side: writes its page every L{SNAPSHOT_INTERVAL} seconds,
    and renders the service's.

    :param directory: the directory the main process made for the pages.
    :param index: this worker's number.
    :param count: how many workers serve.
    :param own: renders this worker's page live.
    :param reactor: the clock.
    """

    log = Logger()

    def __init__(self, directory: str, index: int, count: int, own: Callable[[], bytes], reactor: IReactorTime) -> None:
        self.directory = directory
        self.index = index
        self.count = count
        self._own = own
        self._reactor = reactor
        self._call: IDelayedCall | None = None
        self._failed = False

    def startService(self) -> None:
        Service.startService(self)
        self._snapshot()

    def stopService(self) -> None:
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _page(self) -> dict[str, Family]:
        page = parse(self._own().decode("utf-8"))
        page[_RSS] = Family("", "gauge", {(_RSS, ""): resident_memory()})
        return page

    def _snapshot(self) -> None:
        self._call = self._reactor.callLater(SNAPSHOT_INTERVAL, self._snapshot)
        try:
            write_page(snapshot_path(self.directory, self.index), render(self._page()))
        except OSError as e:
            if not self._failed:
                self.log.error("could not write worker {index}'s metrics to {path}: {error}", index=self.index,
                               path=self.directory, error=str(e))
            self._failed = True
        else:
            self._failed = False

    def render(self) -> bytes:
        """
        :returns: the service's page: this worker's live, the others' last
            written, the dead workers' counts and the main process's, with
            the per-worker series.
        """
        own = self._page()
        pages = {self.index: own}
        for index in range(self.count):
            if index != self.index:
                page = _read(snapshot_path(self.directory, index))
                if page:
                    pages[index] = page
        others = [page for index, page in pages.items() if index != self.index]
        others += [_read(os.path.join(self.directory, DEAD)), _read(os.path.join(self.directory, MAIN))]
        merged = merge(own, others)
        merged.pop(_RSS, None)
        merged.update(per_worker(pages))
        return render(merged)


def retire(directory: str, index: int) -> None:
    """
    The main process's side, when worker C{index} died: add its last
    counters and histograms to L{DEAD} and remove its page, so that the
    totals keep what it counted and its successor starts a page afresh.

    :raises OSError: when the files cannot be read or written.
    """
    path = snapshot_path(directory, index)
    page = _read(path)
    if not page:
        return  # it died before its first page
    counted = {name: family for name, family in page.items() if family.type in ("counter", "histogram")}
    dead = os.path.join(directory, DEAD)
    write_page(dead, render(merge(_read(dead), [counted])))
    os.remove(path)


def write_restarts(directory: str, restarts: Mapping[int, int]) -> None:
    """
    The main process's side: write how often each worker was started again.

    :raises OSError: when the file cannot be written.
    """
    family = Family("Times each worker was started again after it died.", "counter",
                    {("netproxy_worker_restarts_total", f'{{worker="{index}"}}'): float(count)
                     for index, count in sorted(restarts.items())})
    write_page(os.path.join(directory, MAIN), render({"netproxy_worker_restarts_total": family}))
