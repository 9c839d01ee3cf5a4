"""
Benchmark of the HTTP forward proxy against its peers, in one run.

nginx (Debian nginx-light) serves files of 1 KiB, 64 KiB and 1 MiB on
127.0.0.1; wrk (Debian) requests them straight from nginx and through each
proxy: netproxy (``twistd netproxy http``), Tinyproxy and Squid (Debian,
caching off) and proxy.py (PyPI ``proxy.py`` in its own virtualenv,
``--threadless --num-workers 1``). The proxy under test is pinned to CPU 0
with taskset; nginx and wrk share CPU 1. For each size and connection count
it prints requests/s, MiB/s, p50 and p99 latency, errors and the proxy's
peak RSS, as a Markdown table.

    python bench/http_proxy.py [--seconds 10] [--only netproxy,proxy.py] [--rows 1k:100,1m:10]
                               [--workers-rows] [--baseline DIR] [--repeat N] [--install]

``--install`` installs what is missing (apt-get for nginx-light, wrk,
tinyproxy, squid; a virtualenv for proxy.py). ``--baseline DIR`` adds, next
to netproxy, the netproxy of another source tree (a checkout of an earlier
commit, run by DIR/.venv/bin/python when there is one), and prints each
netproxy's ratios against origin and proxy.py and the after/before ratio of
every row.

``--workers-rows`` runs the rows of several processes instead, with
nothing pinned (the proxy, nginx and wrk may each use every CPU): netproxy
with ``--workers 1`` and ``--workers 2``, Squid with ``workers 2`` and
proxy.py at its defaults (an acceptor and a worker per CPU), caching off,
by default at 1 KiB x 100, 1 MiB x 10 and 1 MiB x 100 connections. Before
wrk, every netproxy worker must have answered a request (which worker
accepted a connection is read from /proc). The peak RSS is that of all the
proxy's processes together; the targets are printed, met or MISSED.
Each row runs every proxy in turn, so that drift in the
machine's speed touches them alike; ``--repeat N`` runs N such rounds and
keeps each row's median, the order of
the proxies reversed every other round. Everything it starts is stopped at the end; all
traffic stays on 127.0.0.1.
"""

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from support import (
    HOST,
    RESULT_COLUMNS,
    SIZES,
    THIS,
    MIB_PER_WORKER,
    add_baseline_option,
    add_workers_option,
    describe_netproxies,
    describe_placement,
    every_worker_answers,
    exchanges,
    free_port,
    in_turn,
    install,
    median_result,
    netproxies,
    limit_line,
    peak_rss_mib,
    placement,
    print_before_after,
    print_peer_ratios,
    print_spread,
    print_targets,
    pss_mib,
    proxypy,
    ratio_line,
    result_cells,
    rss_mib,
    run_wrk,
    running,
    several_process_rows,
    spread_sampler,
    squid,
    start_nginx,
    stop_nginx,
    wait_listening,
    write_files,
)

# Every size at every connection count; peak RSS is per row, since each
# proxy is restarted for each row.
SCENARIOS = [(name, connections) for name in SIZES for connections in (1, 10, 100, 1000)]
#: The rows of several processes: those the targets are stated at.
WORKERS_SCENARIOS = [("1k", 100), ("1m", 10), ("1m", 100)]
PACKAGES = [("nginx-light", "nginx"), ("wrk", "wrk"), ("tinyproxy", "tinyproxy"), ("squid", "squid")]


def start_origin(work, port, cpu):
    root = work / "www"
    write_files(root)
    with open(root / "slow", "wb") as slow:
        slow.truncate(256 << 20)
    (root / "slow").chmod(0o644)
    return start_nginx(work, f"server {{ listen {HOST}:{port}; root {root}; }}", cpu)


def proxies(work, port, chosen_netproxies):
    """
    :param chosen_netproxies: the L{support.Netproxy}s to run.
    :returns: name -> argv starting that proxy on C{port}.
    """
    tinyproxy_conf = work / "tinyproxy.conf"
    tinyproxy_conf.write_text(f"Port {port}\nListen {HOST}\nTimeout 60\nMaxClients 2000\nAllow 127.0.0.1\n"
                              f"LogLevel Critical\nPidFile \"{work}/tinyproxy.pid\"\n")
    return {
        # Pass-through on equal terms: Squid's cache is off too.
        **{netproxy.name: netproxy.http(port, "--no-cache") for netproxy in chosen_netproxies},
        "tinyproxy": ["tinyproxy", "-d", "-c", str(tinyproxy_conf)],
        "squid": squid(work, port, "cache deny all"),
        "proxy.py": proxypy(port),
    }


def several_processes(work, port, rows):
    """
    :param rows: L{support.several_process_rows}.
    :returns: name -> argv starting that proxy, of several processes, on
        C{port}.
    """
    commands = {}
    for name, kind, netproxy, workers in rows:
        if kind == "netproxy":
            commands[name] = netproxy.http(port, "--no-cache", "--workers", str(workers))
        elif kind == "squid":
            commands[name] = squid(work, port, "cache deny all", workers=workers)
        else:
            commands[name] = proxypy(port, one_worker=False)
    return commands


def check_serving(kind, proxy, port, pid, origin, name):
    """
    Before wrk on the rows of several processes: a proxy of several
    processes may listen before they all serve, so one answer is awaited,
    and every netproxy worker must give one.

    :param kind: C{netproxy}, C{squid} or C{proxy.py}.
    :raises RuntimeError: when one is not the whole file.
    """
    def whole(answer):
        status, _, body = answer
        return status == 200 and len(body) == SIZES[name]

    if kind == "netproxy":
        every_worker_answers(port, origin, f"/{name}", pid, whole)
    elif not whole(next(iter(asyncio.run(exchanges(port, origin, [f"/{name}"])).values()))):
        raise RuntimeError(f"{proxy}: /{name} was not answered in whole")


def print_workers_targets(results, memory, rows):
    """
    Print the targets of the rows of several processes, for each netproxy.

    :param memory: C{{(name, size, connections): (peak RSS, PSS)}}.
    :param rows: L{support.several_process_rows}.
    """
    def figure(proxy, row, key):
        result = results.get((proxy, *row))
        return None if result is None else result[key]

    counts = {}
    for name, kind, netproxy, workers in rows:
        if kind == "netproxy":
            counts.setdefault(netproxy.name, {})[workers] = name
    for netproxy, named in counts.items():
        one, two = named.get(1), named.get(2)
        lines = [
            ratio_line(f"1k x 100, {two} / {one}, req/s", figure(two, ("1k", 100), "rps"),
                       figure(one, ("1k", 100), "rps"), 1.4),
            ratio_line(f"1k x 100, {two} / proxy.py defaults, req/s", figure(two, ("1k", 100), "rps"),
                       figure("proxy.py defaults", ("1k", 100), "rps"), 1.2),
            ratio_line(f"1m x 10, {two} / {one}, MiB/s", figure(two, ("1m", 10), "mib"),
                       figure(one, ("1m", 10), "mib"), 1.0)]
        for workers, name in named.items():
            rss, pss = memory.get((name, "1m", 100), (None, None))
            line = limit_line(f"1m x 100, {name}, peak RSS of all its processes, MiB", rss, workers * MIB_PER_WORKER)
            lines.append(line and f"{line}; their PSS after the row: {pss:.1f} MiB")
        print_targets(f"Targets of {netproxy}, several processes (this run)", lines)


def slow_download(proxy_port, origin, pid, size=256 << 20, rate=8 << 20, seconds_limit=120):
    """
    Download C{size} bytes through the proxy with a client that reads at
    C{rate} bytes a second, sampling the proxy's RSS.

    :returns: C{(rss_before, rss_peak, received)} in MiB, MiB, bytes.
    """
    before = peak = rss_mib(pid)
    with socket.create_connection((HOST, proxy_port), timeout=30) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(f"GET http://{origin}/slow HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode())
        received, started = 0, time.monotonic()
        deadline = started + seconds_limit
        while received < size and time.monotonic() < deadline:
            data = client.recv(256 * 1024)
            if not data:
                break
            received += len(data)
            # Read no faster than the rate: sleep until this many bytes are due.
            due = started + received / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            peak = max(peak, rss_mib(pid))
    return before, peak, received


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default="netproxy,tinyproxy,squid,proxy.py")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--rows", help="size:connections pairs to run, such as 1k:100,1m:10 (default: all; "
                                       "with --workers-rows, 1k:100,1m:10,1m:100)")
    parser.add_argument("--slow-client", action="store_true",
                        help="also download 256 MiB through netproxy at 8 MiB/s and report its RSS growth")
    add_workers_option(parser)
    add_baseline_option(parser)
    args = parser.parse_args()
    if args.install:
        install(PACKAGES)
    chosen_netproxies = netproxies(args.baseline)
    description = describe_netproxies(chosen_netproxies)
    # The baselines run wherever netproxy does, right after it.
    names = [netproxy.name for netproxy in chosen_netproxies]
    several = several_process_rows(args.only.split(","), chosen_netproxies) if args.workers_rows else []
    if args.workers_rows:
        chosen = [name for name, _, _, _ in several]
        scenarios = WORKERS_SCENARIOS
    else:
        chosen = [name for proxy in args.only.split(",") for name in (names if proxy == "netproxy" else [proxy])]
        scenarios = SCENARIOS
    kinds = {name: kind for name, kind, _, _ in several}
    proxy_cpu, other_cpu = placement(args.workers_rows)
    if args.rows:
        scenarios = [(name, int(count)) for name, count in (row.split(":") for row in args.rows.split(","))]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def command(proxy, port):
            if args.workers_rows:
                return several_processes(work, port, several)[proxy]
            return proxies(work, port, chosen_netproxies)[proxy]

        origin_port = free_port()
        nginx = start_origin(work, origin_port, other_cpu)
        try:
            wait_listening(origin_port)
            origin = f"{HOST}:{origin_port}"
            if THIS.name in chosen and args.slow_client:
                with running(lambda port: proxies(work, port, [THIS])[THIS.name], work) as (port, pid):
                    slow = slow_download(port, origin, pid)
            for round_ in range(args.repeat):
                for name, connections in scenarios:
                    result = run_wrk(origin_port, origin, name, connections, args.seconds, work, through_proxy=False,
                                     cpu=other_cpu)
                    runs.setdefault(("origin (nginx)", name, connections), []).append((result, float("nan"), None))
                    for proxy in in_turn(chosen, round_):
                        with running(lambda port, proxy=proxy: command(proxy, port), work, proxy_cpu) as (port, pid):
                            if args.workers_rows:
                                check_serving(kinds[proxy], proxy, port, pid, origin, name)
                            result = run_wrk(port, origin, name, connections, args.seconds, work, through_proxy=True,
                                             cpu=other_cpu,
                                             midway=spread_sampler(port, pid) if args.workers_rows else None)
                            runs.setdefault((proxy, name, connections), []).append(
                                (result, peak_rss_mib(pid), pss_mib(pid)))
        finally:
            stop_nginx(nginx)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per row"
          f"{f', median of {args.repeat} rounds' if args.repeat > 1 else ''}, {describe_placement(args.workers_rows)}\n")
    print(description + "\n")
    if args.slow_client and THIS.name in chosen:
        before, peak, received = slow
        print(f"netproxy, 256 MiB read at 8 MiB/s: {received / 2**20:.0f} MiB received, RSS {before:.1f} MiB "
              f"before, {peak:.1f} MiB at most (+{peak - before:.1f} MiB)\n")
    results = {key: median_result([result for result, _, _ in measured]) for key, measured in runs.items()}
    memory = {key: (max(rss for _, rss, _ in measured), max((pss for _, _, pss in measured if pss is not None), default=None))
              for key, measured in runs.items()}
    print(f"| proxy | size | conns | {RESULT_COLUMNS} | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for proxy in ["origin (nginx)", *chosen]:
        for name, connections in scenarios:
            print(f"| {proxy} | {name} | {connections} | {result_cells(results[proxy, name, connections])} | "
                  f"{memory[proxy, name, connections][0]:.0f} |")
    if args.workers_rows:
        print_spread(runs, chosen, scenarios)
        print_workers_targets(results, memory, several)
        return
    print_peer_ratios(results, chosen_netproxies, scenarios, [("origin (nginx)", "origin"), ("proxy.py", "proxy.py")])
    print_before_after(results, chosen_netproxies, scenarios)


if __name__ == "__main__":
    main()
