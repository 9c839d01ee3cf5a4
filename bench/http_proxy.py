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
                               [--baseline DIR] [--repeat N] [--install]

``--install`` installs what is missing (apt-get for nginx-light, wrk,
tinyproxy, squid; a virtualenv for proxy.py). ``--baseline DIR`` adds, next
to netproxy, the netproxy of another source tree (a checkout of an earlier
commit, run by DIR/.venv/bin/python when there is one), and prints each
netproxy's ratios against origin and proxy.py and the after/before ratio of
every row. Each row runs every proxy in turn, so that drift in the
machine's speed touches them alike; ``--repeat N`` runs N such rounds and
keeps each row's median, the order of
the proxies reversed every other round. Everything it starts is stopped at the end; all
traffic stays on 127.0.0.1.
"""

import argparse
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
    add_baseline_option,
    describe_netproxies,
    free_port,
    in_turn,
    install,
    median_result,
    netproxies,
    peak_rss_mib,
    print_before_after,
    print_peer_ratios,
    proxypy,
    result_cells,
    rss_mib,
    run_wrk,
    running,
    squid,
    start_nginx,
    stop_nginx,
    wait_listening,
    write_files,
)

# Every size at every connection count; peak RSS is per row, since each
# proxy is restarted for each row.
SCENARIOS = [(name, connections) for name in SIZES for connections in (1, 10, 100, 1000)]
PACKAGES = [("nginx-light", "nginx"), ("wrk", "wrk"), ("tinyproxy", "tinyproxy"), ("squid", "squid")]


def start_origin(work, port):
    root = work / "www"
    write_files(root)
    with open(root / "slow", "wb") as slow:
        slow.truncate(256 << 20)
    (root / "slow").chmod(0o644)
    return start_nginx(work, f"server {{ listen {HOST}:{port}; root {root}; }}")


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
    parser.add_argument("--rows", help="size:connections pairs to run, such as 1k:100,1m:10 (default: all)")
    parser.add_argument("--slow-client", action="store_true",
                        help="also download 256 MiB through netproxy at 8 MiB/s and report its RSS growth")
    add_baseline_option(parser)
    args = parser.parse_args()
    if args.install:
        install(PACKAGES)
    chosen_netproxies = netproxies(args.baseline)
    description = describe_netproxies(chosen_netproxies)
    # The baselines run wherever netproxy does, right after it.
    names = [netproxy.name for netproxy in chosen_netproxies]
    chosen = [name for proxy in args.only.split(",") for name in (names if proxy == "netproxy" else [proxy])]
    scenarios = SCENARIOS
    if args.rows:
        scenarios = [(name, int(count)) for name, count in (row.split(":") for row in args.rows.split(","))]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        origin_port = free_port()
        nginx = start_origin(work, origin_port)
        try:
            wait_listening(origin_port)
            origin = f"{HOST}:{origin_port}"
            if THIS.name in chosen and args.slow_client:
                with running(lambda port: proxies(work, port, [THIS])[THIS.name], work) as (port, pid):
                    slow = slow_download(port, origin, pid)
            for round_ in range(args.repeat):
                for name, connections in scenarios:
                    result = run_wrk(origin_port, origin, name, connections, args.seconds, work, through_proxy=False)
                    runs.setdefault(("origin (nginx)", name, connections), []).append((result, float("nan")))
                    for proxy in in_turn(chosen, round_):
                        with running(lambda port, proxy=proxy: proxies(work, port, chosen_netproxies)[proxy],
                                     work) as (port, pid):
                            result = run_wrk(port, origin, name, connections, args.seconds, work, through_proxy=True)
                            runs.setdefault((proxy, name, connections), []).append((result, peak_rss_mib(pid)))
        finally:
            stop_nginx(nginx)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per row"
          f"{f', median of {args.repeat} rounds' if args.repeat > 1 else ''}, proxy on CPU 0\n")
    print(description + "\n")
    if args.slow_client and THIS.name in chosen:
        before, peak, received = slow
        print(f"netproxy, 256 MiB read at 8 MiB/s: {received / 2**20:.0f} MiB received, RSS {before:.1f} MiB "
              f"before, {peak:.1f} MiB at most (+{peak - before:.1f} MiB)\n")
    results = {key: median_result([result for result, _ in measured]) for key, measured in runs.items()}
    print(f"| proxy | size | conns | {RESULT_COLUMNS} | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for proxy in ["origin (nginx)", *chosen]:
        for name, connections in scenarios:
            rss = max(rss for _, rss in runs[proxy, name, connections])
            print(f"| {proxy} | {name} | {connections} | {result_cells(results[proxy, name, connections])} | "
                  f"{rss:.0f} |")
    print_peer_ratios(results, chosen_netproxies, scenarios, [("origin (nginx)", "origin"), ("proxy.py", "proxy.py")])
    print_before_after(results, chosen_netproxies, scenarios)


if __name__ == "__main__":
    main()
