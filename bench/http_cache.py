"""
Benchmark of netproxy's cache: hits against Squid's memory cache, and a restart.

nginx (Debian nginx-light) serves files of 1 KiB, 64 KiB and 1 MiB on
127.0.0.1 with C{Cache-Control: max-age=3600}, and logs every request it
serves to a file. In one run:

  1. Hit rows. For netproxy (C{twistd netproxy http}, a fresh C{--cache-dir},
     the default C{--cache-size}) and Squid (memory cache on), started afresh
     for each row: one request stores the row's file, a second must be a hit
     (netproxy's C{Cache-Status} says C{hit}, Squid's C{X-Cache} says C{HIT}),
     then wrk (one thread) requests it for C{--seconds}. The origin's log
     must not grow during wrk: the column "origin reqs" says how many
     requests reached nginx, 0 when every answer was a hit.
  2. proxy.py pass-through (C{--threadless --num-workers 1}, as in
     C{http_proxy.py}, from an nginx server without the header or the log)
     at 1 KiB x 100 connections, the row the targets compare with, and the
     ratios of the targets.
  3. A restart row. C{--entries} distinct URLs (C{/n/0}, C{/n/1}, ..., small
     bodies that nginx generates) go through a running netproxy from 50
     connections, the last one alone after all the others, so that it is the
     last entry written; netproxy is stopped with SIGTERM and started again
     on the same cache directory. From spawning twistd, with a client polling
     with non-blocking connects and C{Cache-Control: only-if-cached} (so that
     an entry not found yet is a 504, not a fetch that would store it again),
     it reports when the first answer came, when C{/n/0} was a hit and when
     the last entry written was a hit; then it checks every entry the same
     way. netproxy loads its index in the background and finds an entry not
     yet scanned by its file name, so the last entry is served as soon as the
     first. A start with an empty cache directory gives the baseline
     (interpreter and Twisted start-up).

Squid runs with C{cache_mem 256 MB}, C{maximum_object_size_in_memory 2 MB},
C{memory_cache_mode always} and no C{cache_dir}: a memory-only cache is
Squid's fastest hit path, since with one worker a rock store needs disker
processes and a ufs one swaps every object out to disk as well, none of which
a memory hit needs. C{client_db off} spares it per-client statistics that
netproxy does not keep either.

The proxy under test is pinned to CPU 0 with taskset; nginx, wrk and this
script share CPU 1. For each row it prints requests/s, MiB/s, p50 and p99
latency, errors and the proxy's peak RSS, as a Markdown table.

    python bench/http_cache.py [--seconds 10] [--rows 1k:100,1m:10 | all] [--only netproxy,squid,proxy.py,restart]
                               [--entries 10000] [--workers-rows] [--baseline DIR] [--repeat N] [--install]

C{--workers-rows} runs the hit rows with several processes instead, nothing
pinned (the proxy, nginx, wrk and this script may each use every CPU):
netproxy with C{--workers 1} and C{--workers 2}, Squid with C{workers 2}
and its memory cache shared by them (C{memory_cache_shared on}), and
proxy.py's pass-through at its defaults (an acceptor and a worker per CPU);
no restart row. The workers of a netproxy share one cache index, so after
the one request that stores the row's file, every worker must answer it
with a hit (which worker accepted a connection is read from /proc) before
wrk. It prints how each proxy's processes shared wrk's connections, the
peak RSS of all of a proxy's processes, and the target, met or MISSED.

C{--rows all} runs every size at 1, 10 and 100 connections. C{--baseline
DIR} adds, wherever netproxy runs (hit rows, restart), the netproxy of
another source tree (a checkout of an earlier commit, run by
DIR/.venv/bin/python when there is one), prints the targets' ratios for
each, and the after/before ratio of every row. Each hit row runs every
proxy in turn, so that drift in the machine's speed touches them alike;
C{--repeat N} runs N such rounds and keeps each row's median, the order of
the proxies reversed every other round. C{--install}
installs what is missing (apt-get for nginx-light, wrk, squid; a virtualenv
for proxy.py, or the one C{NETPROXY_BENCH_PROXYPY} names). Everything it
starts is stopped at the end; all traffic stays on 127.0.0.1; every loop is
bounded in count and time.
"""

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from support import (
    HOST,
    RESULT_COLUMNS,
    SIZES,
    add_baseline_option,
    add_workers_option,
    cache_status,
    describe_netproxies,
    describe_placement,
    every_worker_answers,
    exchanges,
    free_port,
    in_turn,
    install,
    median_result,
    netproxies,
    peak_rss_mib,
    pin_this_process,
    placement,
    poll,
    print_before_after,
    print_peer_ratios,
    print_spread,
    print_targets,
    proxypy,
    ratio_line,
    result_cells,
    run_wrk,
    running,
    several_process_rows,
    spawn,
    spread_sampler,
    squid,
    start_nginx,
    stop,
    stop_nginx,
    wait_listening,
    write_files,
)

PACKAGES = [("nginx-light", "nginx"), ("wrk", "wrk"), ("squid", "squid")]
DEFAULT_ROWS = [("1k", 100), ("1m", 10)]
ALL_ROWS = [(name, connections) for name in SIZES for connections in (1, 10, 100)]
#: The rows at which proxy.py passes requests through, to compare hits with.
PASS_THROUGH_ROWS = [("1k", 100)]
SQUID_MEMORY_CACHE = ["cache_mem 256 MB", "maximum_object_size_in_memory 2 MB", "memory_cache_mode always",
                      "client_db off"]
#: Connections the restart row's client fills and checks the cache with.
FILL_CONNECTIONS = 50
#: Seconds a whole fill or check may take.
FILL_SECONDS = 600


def start_origin(work, cached_port, plain_port, cpu):
    """
    Start nginx with two servers of the same files: on C{cached_port},
    cacheable for an hour, with C{/n/ANYTHING} answered with a small body
    of its own, and every request logged to C{work/origin.log}; on
    C{plain_port}, as C{http_proxy.py}'s origin: no header, no log.

    :returns: the L{subprocess.Popen} and the log's path.
    """
    root = work / "www"
    write_files(root)
    log = work / "origin.log"
    servers = f"""
  server {{ listen {HOST}:{cached_port}; root {root}; access_log {log};
    add_header Cache-Control "max-age=3600" always;
    location /n/ {{ return 200 "entry $uri\\n"; }} }}
  server {{ listen {HOST}:{plain_port}; root {root}; }}"""
    return start_nginx(work, servers, cpu), log


def origin_requests(log):
    """
    :returns: how many requests nginx has logged, once it has written them.
    """
    time.sleep(0.2)
    try:
        with open(log, "rb") as lines:
            return sum(1 for _ in lines)
    except FileNotFoundError:
        return 0


def hit_evidence(squid_, headers):
    """
    :param squid_: whether the proxy is Squid, else a netproxy.
    :returns: the header saying the answer was a hit, or C{None}.
    """
    if not squid_ and "hit" in cache_status(headers):
        return f"Cache-Status: {headers['cache-status']}"
    if squid_ and headers.get("x-cache", "").startswith("HIT"):
        return f"X-Cache: {headers['x-cache']}"
    return None


class Cached:
    """
    A caching proxy of the hit rows.

    :ivar netproxy: a L{support.Netproxy}, or C{None} for Squid.
    :ivar workers: its workers: C{None} for one process as it runs without
        the setting (netproxy's C{--workers}, Squid's C{workers}).
    """

    def __init__(self, netproxy, workers=None):
        self.netproxy = netproxy
        self.workers = workers

    def command(self, work):
        """
        :returns: a function of a port giving the command line of this
            proxy with its cache on; a netproxy's in a new directory of its
            own, Squid's in memory, shared by its workers when it has several.
        """
        if self.netproxy is None:
            if self.workers is None:
                return lambda port: squid(work, port, *SQUID_MEMORY_CACHE)
            return lambda port: squid(work, port, *SQUID_MEMORY_CACHE, "memory_cache_shared on", workers=self.workers)
        cache = tempfile.mkdtemp(dir=work, prefix="cache-")
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        return lambda port: self.netproxy.http(port, "--cache-dir", cache, *workers)


def hit_row(proxy, cached, work, origin, log, name, connections, seconds, cpus):
    """
    Start C{proxy}, store C{/NAME} in it, check the next answer is a hit
    (from each of a netproxy's workers, when it has them), and run wrk at
    C{connections} connections.

    :param cached: its L{Cached}.
    :param cpus: the CPUs of the proxy and of wrk (L{support.placement}).
    :returns: C{(wrk result, peak RSS, origin requests during wrk, evidence)}.
    :raises RuntimeError: when the second answer, or a worker's, is not a hit.
    """
    proxy_cpu, wrk_cpu = cpus
    squid_ = cached.netproxy is None
    with running(cached.command(work), work, proxy_cpu) as (port, pid):
        # As wrk asks: with the proxy's address in Host.
        host = f"{HOST}:{port}"
        asyncio.run(exchanges(port, origin, [f"/{name}"], host=host))
        (status, headers, body), = asyncio.run(exchanges(port, origin, [f"/{name}"], host=host)).values()
        evidence = hit_evidence(squid_, headers)
        if status != 200 or len(body) != SIZES[name] or evidence is None:
            raise RuntimeError(f"{proxy}: /{name} was not a hit after one request: {status} {headers}")
        if cached.workers is not None and not squid_:
            # The one store above is in the index they share: each must find it.
            answers = every_worker_answers(port, origin, f"/{name}", pid, lambda answer: (
                answer[0] == 200 and len(answer[2]) == SIZES[name] and hit_evidence(False, answer[1])), host)
            evidence += f", and a hit from each of its {len(answers)} serving processes"
        before = origin_requests(log)
        result = run_wrk(port, origin, name, connections, seconds, work, through_proxy=True, cpu=wrk_cpu,
                         midway=None if cached.workers is None else spread_sampler(port, pid))
        return result, peak_rss_mib(pid), origin_requests(log) - before, evidence


def stored_entries(cache):
    """
    :returns: the entries a netproxy cache directory holds: the rows of its
        index (the SQLite store), or its record files (the store before it).
    """
    index = cache / "index.sqlite"
    if index.exists():
        with closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM entries").fetchone()[0]
    return sum(1 for _ in cache.glob("*/*.meta"))


def restart(netproxy, work, origin, entries):
    """
    Fill a cache directory with C{entries} entries through C{netproxy} (a
    L{support.Netproxy}), stop it, and time its restart on that directory
    and one on an empty one.

    :returns: a dict of figures, as L{print_restart} prints them.
    """
    def spawn_netproxy(port, cache, work):
        return spawn(netproxy.http(port, "--cache-dir", str(cache)), work)

    cache = Path(tempfile.mkdtemp(dir=work, prefix="restart-cache-"))
    paths = [f"/n/{number}" for number in range(entries)]
    figures = {"entries": entries, "first path": paths[0], "last path": paths[-1]}
    port = free_port()
    process = spawn_netproxy(port, cache, work)
    try:
        wait_listening(port)
        started = time.monotonic()
        answers = asyncio.run(exchanges(port, origin, paths[:-1], FILL_CONNECTIONS, seconds=FILL_SECONDS))
        # Alone, after every other answer: the last entry written.
        answers.update(asyncio.run(exchanges(port, origin, paths[-1:])))
        figures["fill seconds"] = time.monotonic() - started
        figures["stored"] = sum(1 for _, headers, _ in answers.values() if "stored" in cache_status(headers))
        figures["fill RSS"] = peak_rss_mib(process.pid)
    finally:
        figures["stop seconds"] = stop(process)
    figures["records"] = stored_entries(cache)

    # The baseline: the same start-up on an empty cache directory.
    port = free_port()
    started = time.monotonic()
    process = spawn_netproxy(port, tempfile.mkdtemp(dir=work, prefix="empty-cache-"), work)
    try:
        figures["empty first answer"], _ = asyncio.run(poll(port, origin, paths[0], started, until_hit=False))
    finally:
        stop(process)

    port = free_port()
    started = time.monotonic()
    process = spawn_netproxy(port, cache, work)
    try:
        figures["first answer"], figures["first hit"] = asyncio.run(
            poll(port, origin, paths[0], started, until_hit=True))
        _, figures["last hit"] = asyncio.run(poll(port, origin, paths[-1], started, until_hit=True))
        answers = asyncio.run(exchanges(port, origin, paths, FILL_CONNECTIONS, only_if_cached=True,
                                        seconds=FILL_SECONDS))
        figures["all checked"] = time.monotonic() - started
        figures["all hits"] = sum(1 for _, headers, _ in answers.values() if "hit" in cache_status(headers))
        figures["peak RSS"] = peak_rss_mib(process.pid)
    finally:
        stop(process)
    return figures


def seconds_cell(value):
    return "never" if value is None else f"{value:.3f}"


def print_restart(name, figures):
    entries = figures["entries"]
    print(f"{name}: restart with {entries:,} entries stored. Filled through it from {FILL_CONNECTIONS} connections "
          f"in {figures['fill seconds']:.1f} s ({figures['stored']:,} answers said \"stored\"); SIGTERM stopped it in "
          f"{figures['stop seconds']:.2f} s, leaving {figures['records']:,} entries. Then started again on that "
          f"directory, polled with only-if-cached requests from the moment twistd was spawned:\n")
    print("| restart | seconds after spawning twistd |")
    print("|---|---:|")
    print(f"| empty cache directory: first answer (a 504) | {seconds_cell(figures['empty first answer'])} |")
    print(f"| {entries:,} entries: first answer | {seconds_cell(figures['first answer'])} |")
    print(f"| {entries:,} entries: first HIT ({figures['first path']}, first written) | "
          f"{seconds_cell(figures['first hit'])} |")
    print(f"| {entries:,} entries: HIT for {figures['last path']} (last written) | "
          f"{seconds_cell(figures['last hit'])} |")
    print(f"| {entries:,} entries: every entry asked for, {figures['all hits']:,} HITs | "
          f"{seconds_cell(figures['all checked'])} |")
    print(f"\nPeak RSS of {name}: {figures['fill RSS']:.0f} MiB filling the cache, {figures['peak RSS']:.0f} MiB "
          f"restarted, once every entry was asked for.\n")


#: The restart figures compared before and after, and their titles.
RESTART_FIGURES = [("fill seconds", "fill"), ("empty first answer", "empty directory: first answer"),
                   ("first hit", "first HIT"), ("last hit", "last-written entry's HIT"),
                   ("all checked", "every entry checked")]


def print_restart_before_after(figures):
    """
    Print the restart's seconds for every netproxy side by side, and the
    first one's over each other's (lower is better).

    :param figures: C{[(name, figures)]}, the netproxy under test first.
    """
    (after, mine), others = figures[0], figures[1:]
    if not others:
        return
    print("Restart, after / before (seconds, lower is better):\n")
    print(f"| figure | {after} | " + " | ".join(f"{name} | after / {name}" for name, _ in others) + " |")
    print("|---|---:|" + "---:|---:|" * len(others))
    for key, title in RESTART_FIGURES:
        cells = []
        for _, theirs in others:
            ratio = "n/a" if mine[key] is None or not theirs[key] else f"{mine[key] / theirs[key]:.3f}x"
            cells.append(f"{seconds_cell(theirs[key])} | {ratio}")
        print(f"| {title} | {seconds_cell(mine[key])} | " + " | ".join(cells) + " |")
    print()


def print_one_core_targets(results, name):
    """
    Print the ratios the targets are stated in, for the netproxy C{name}
    and the rows that ran.
    """
    def figure(proxy, row, key):
        result = results.get((proxy, *row))
        return None if result is None else result[key]

    print_targets(f"Targets of {name} (one core, this run)", [
        ratio_line("1k x 100, netproxy hits / proxy.py pass-through, req/s", figure(name, ("1k", 100), "rps"),
                   figure("proxy.py", ("1k", 100), "rps"), 2.0),
        ratio_line("1k x 100, netproxy hits / Squid hits, req/s", figure(name, ("1k", 100), "rps"),
                   figure("squid", ("1k", 100), "rps"), 0.4),
        ratio_line("1m x 10, netproxy hits / Squid hits, MiB/s", figure(name, ("1m", 10), "mib"),
                   figure("squid", ("1m", 10), "mib"), 1.0)])


def print_workers_targets(results, netproxy, squid_name):
    """
    Print the target of the rows of several processes for C{netproxy}, a
    L{support.Netproxy}: its hits with two workers against those of Squid's
    (named C{squid_name}).
    """
    result, theirs = results.get((f"{netproxy.name} --workers 2", "1k", 100)), results.get((squid_name, "1k", 100))
    print_targets(f"Targets of {netproxy.name}, several processes (this run)", [
        ratio_line(f"1k x 100, {netproxy.name} --workers 2 hits / {squid_name} hits, req/s",
                   result and result["rps"], theirs and theirs["rps"], 0.6)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk per row")
    parser.add_argument("--rows", help="size:connections pairs to run, such as 1k:100,1m:10 (the default), "
                                       "or all: every size at 1, 10 and 100 connections")
    parser.add_argument("--only", default="netproxy,squid,proxy.py,restart",
                        help="what to run, of netproxy, squid, proxy.py and restart (default: all of them)")
    parser.add_argument("--entries", type=int, default=10_000, help="entries stored before the restart")
    parser.add_argument("--install", action="store_true", help="install nginx-light, wrk, squid and proxy.py")
    add_workers_option(parser)
    add_baseline_option(parser)
    args = parser.parse_args()
    if args.install:
        install(PACKAGES)
    chosen_netproxies = netproxies(args.baseline)
    description = describe_netproxies(chosen_netproxies)
    chosen = args.only.split(",")
    scenarios = DEFAULT_ROWS
    if args.rows == "all":
        scenarios = ALL_ROWS
    elif args.rows:
        scenarios = [(name, int(count)) for name, count in (row.split(":") for row in args.rows.split(","))]
    # name -> its Cached; the baselines right after netproxy.
    caches = {**({n.name: Cached(n) for n in chosen_netproxies} if "netproxy" in chosen else {}),
              **({"squid": Cached(None)} if "squid" in chosen else {})}
    pass_through = "proxy.py"
    several = several_process_rows(chosen, chosen_netproxies) if args.workers_rows else []
    if args.workers_rows:
        caches = {name: Cached(netproxy, workers) for name, kind, netproxy, workers in several if kind != "proxy.py"}
        pass_through = "proxy.py defaults"
    cpus = placement(args.workers_rows)
    if not args.workers_rows:
        pin_this_process(1)
    runs, evidence, figures = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cached_port, plain_port = free_port(), free_port()
        nginx, log = start_origin(work, cached_port, plain_port, cpus[1])
        try:
            wait_listening(cached_port)
            wait_listening(plain_port)
            origin = f"{HOST}:{cached_port}"
            for round_ in range(args.repeat):
                for name, connections in scenarios:
                    for proxy in in_turn(list(caches), round_):
                        result, rss, reached, evidence[proxy] = hit_row(
                            proxy, caches[proxy], work, origin, log, name, connections, args.seconds, cpus)
                        runs.setdefault((proxy, name, connections), []).append((result, rss, reached))
                    if "proxy.py" in chosen and (name, connections) in PASS_THROUGH_ROWS:
                        command = lambda port: proxypy(port, one_worker=not args.workers_rows)  # noqa: E731
                        with running(command, work, cpus[0]) as (port, pid):
                            if args.workers_rows:
                                # It listens before its processes serve: one answer first.
                                asyncio.run(exchanges(port, f"{HOST}:{plain_port}", [f"/{name}"]))
                            result = run_wrk(port, f"{HOST}:{plain_port}", name, connections, args.seconds, work,
                                             through_proxy=True, cpu=cpus[1],
                                             midway=spread_sampler(port, pid) if args.workers_rows else None)
                            runs.setdefault((pass_through, name, connections), []).append(
                                (result, peak_rss_mib(pid), None))
            if "restart" in chosen and not args.workers_rows:
                figures = [(n.name, restart(n, work, origin, args.entries)) for n in chosen_netproxies]
        finally:
            stop_nginx(nginx)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per row"
          f"{f', median of {args.repeat} rounds' if args.repeat > 1 else ''}, {describe_placement(args.workers_rows)}\n")
    print(description + "\n")
    results = {key: median_result([result for result, _, _ in measured]) for key, measured in runs.items()}
    if runs:
        print(f"| proxy | size | conns | {RESULT_COLUMNS} | peak RSS MiB | origin reqs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        kinds = [*((proxy, "hits") for proxy in caches), (pass_through, "pass-through")]
        for proxy, kind in kinds:
            for name, connections in scenarios:
                measured = runs.get((proxy, name, connections))
                if measured is None:
                    continue
                rss = max(rss for _, rss, _ in measured)
                reached = [reached for _, _, reached in measured if reached is not None]
                print(f"| {proxy} ({kind}) | {name} | {connections} | {result_cells(results[proxy, name, connections])} "
                      f"| {rss:.0f} | {sum(reached) if reached else 'n/a'} |")
        print()
        for proxy, header in evidence.items():
            print(f"{proxy}: the answer after the warm-up request said {header!r}.")
        if args.workers_rows:
            print_spread(runs, [*caches, pass_through], scenarios)
            for netproxy in chosen_netproxies if "netproxy" in chosen else []:
                print_workers_targets(results, netproxy, next(iter(n for n, k, _, _ in several if k == "squid"), None))
            return
        for netproxy in chosen_netproxies:
            print_one_core_targets(results, netproxy.name)
        print_peer_ratios(results, chosen_netproxies, scenarios,
                          [("squid", "Squid hits"), ("proxy.py", "proxy.py pass-through")])
        print_before_after(results, chosen_netproxies, scenarios)
        print()
    for name, figure in figures:
        print_restart(name, figure)
    print_restart_before_after(figures)


if __name__ == "__main__":
    main()
