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

    python bench/http_proxy.py [--seconds 10] [--only netproxy,proxy.py] [--rows 1k:100,1m:10] [--install]

``--install`` installs what is missing (apt-get for nginx-light, wrk,
tinyproxy, squid; a virtualenv for proxy.py). Everything it starts is
stopped at the end; all traffic stays on 127.0.0.1.
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
    free_port,
    install,
    netproxy_http,
    peak_rss_mib,
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


def proxies(work, port):
    """
    :returns: name -> argv starting that proxy on C{port}.
    """
    tinyproxy_conf = work / "tinyproxy.conf"
    tinyproxy_conf.write_text(f"Port {port}\nListen {HOST}\nTimeout 60\nMaxClients 2000\nAllow 127.0.0.1\n"
                              f"LogLevel Critical\nPidFile \"{work}/tinyproxy.pid\"\n")
    return {
        # Pass-through on equal terms: Squid's cache is off too.
        "netproxy": netproxy_http(port, "--no-cache"),
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
    args = parser.parse_args()
    if args.install:
        install(PACKAGES)
    chosen = args.only.split(",")
    scenarios = SCENARIOS
    if args.rows:
        scenarios = [(name, int(count)) for name, count in (row.split(":") for row in args.rows.split(","))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        origin_port = free_port()
        nginx = start_origin(work, origin_port)
        try:
            wait_listening(origin_port)
            origin = f"{HOST}:{origin_port}"
            for name, connections in scenarios:
                result = run_wrk(origin_port, origin, name, connections, args.seconds, work, through_proxy=False)
                rows.append(("origin (nginx)", name, connections, result, float("nan")))
            for proxy in chosen:
                if proxy == "netproxy" and args.slow_client:
                    with running(lambda port, proxy=proxy: proxies(work, port)[proxy], work) as (port, pid):
                        slow = slow_download(port, origin, pid)
                for name, connections in scenarios:
                    with running(lambda port, proxy=proxy: proxies(work, port)[proxy], work) as (port, pid):
                        result = run_wrk(port, origin, name, connections, args.seconds, work, through_proxy=True)
                        rows.append((proxy, name, connections, result, peak_rss_mib(pid)))
        finally:
            stop_nginx(nginx)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per row, proxy on CPU 0\n")
    if args.slow_client and "netproxy" in chosen:
        before, peak, received = slow
        print(f"netproxy, 256 MiB read at 8 MiB/s: {received / 2**20:.0f} MiB received, RSS {before:.1f} MiB "
              f"before, {peak:.1f} MiB at most (+{peak - before:.1f} MiB)\n")
    print(f"| proxy | size | conns | {RESULT_COLUMNS} | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for proxy, name, connections, r, rss in rows:
        print(f"| {proxy} | {name} | {connections} | {result_cells(r)} | {rss:.0f} |")


if __name__ == "__main__":
    main()
