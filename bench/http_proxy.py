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
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from support import HOST, free_port, pinned, twistd, wait_listening

SIZES = {"1k": 1024, "64k": 64 * 1024, "1m": 1024 * 1024}
# Every size at every connection count; peak RSS is per row, since each
# proxy is restarted for each row.
SCENARIOS = [(name, connections) for name in SIZES for connections in (1, 10, 100, 1000)]
PROXYPY_VENV = Path(os.environ.get('NETPROXY_BENCH_PROXYPY', Path(tempfile.gettempdir()) / 'netproxy-bench-proxypy'))
LUA = 'wrk.path = "http://{origin}/{name}"\n'


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def install():
    missing = [p for p, b in (("nginx-light", "nginx"), ("wrk", "wrk"), ("tinyproxy", "tinyproxy"),
                              ("squid", "squid")) if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not (PROXYPY_VENV / "bin" / "proxy").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PROXYPY_VENV)], check=True)
        subprocess.run([str(PROXYPY_VENV / "bin" / "pip"), "install", "-q", "proxy.py"], check=True)


def start_nginx(work, port):
    # nginx's worker runs as an unprivileged user: let it read the files.
    work.chmod(0o755)
    root = work / "www"
    root.mkdir(mode=0o755)
    for name, size in SIZES.items():
        (root / name).write_bytes(os.urandom(size))
        (root / name).chmod(0o644)
    with open(root / "slow", "wb") as slow:
        slow.truncate(256 << 20)
    (root / "slow").chmod(0o644)
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 60;
  server {{ listen {HOST}:{port}; root {root}; }} }}
""")
    return subprocess.Popen(pinned(1, ["nginx", "-c", str(conf), "-p", str(work)]), preexec_fn=raise_file_limit)


def proxies(work, port):
    """
    :returns: name -> argv starting that proxy on C{port}.
    """
    tinyproxy_conf = work / "tinyproxy.conf"
    tinyproxy_conf.write_text(f"Port {port}\nListen {HOST}\nTimeout 60\nMaxClients 2000\nAllow 127.0.0.1\n"
                              f"LogLevel Critical\nPidFile \"{work}/tinyproxy.pid\"\n")
    squid_conf = work / "squid.conf"
    squid_conf.write_text(f"http_port {HOST}:{port}\ncache deny all\naccess_log none\ncache_log /dev/null\n"
                          f"pid_filename {work}/squid.pid\nhttp_access allow all\nworkers 1\n"
                          f"max_filedescriptors 8192\ncoredump_dir {work}\nshutdown_lifetime 0 seconds\n")
    return {
        # Pass-through on equal terms: Squid's cache is off too.
        "netproxy": twistd("http", "--listen", f"tcp:{port}:interface={HOST}:backlog=4096", "--max-connections", "4096",
                           "--no-cache"),
        "tinyproxy": ["tinyproxy", "-d", "-c", str(tinyproxy_conf)],
        "squid": ["squid", "-N", "-f", str(squid_conf)],
        "proxy.py": [str(PROXYPY_VENV / "bin" / "proxy"), "--hostname", HOST, "--port", str(port), "--threadless",
                     "--num-workers", "1", "--num-acceptors", "1", "--log-level", "WARNING", "--backlog", "4096"],
    }


def peak_rss_mib(pid):
    """
    :returns: the peak resident memory of C{pid} and its children, in MiB.
    """
    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mib(pid):
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024


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


def run_wrk(target_port, origin, name, connections, seconds, work, through_proxy):
    script = work / f"{name}.lua"
    script.write_text(LUA.format(origin=origin, name=name))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if through_proxy:
        argv += ["-s", str(script)]
    url = f"http://{HOST}:{target_port}/" + ("" if through_proxy else name)
    output = subprocess.run(pinned(1, argv + [url]), capture_output=True, text=True, preexec_fn=raise_file_limit,
                            timeout=seconds + 60).stdout
    return parse_wrk(output)


def parse_wrk(output):
    def number(pattern, default=0.0):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else default

    def latency(percent):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    requests = number(r"Requests/sec:\s+([\d.]+)")
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", output)
    mib = float(transfer.group(1)) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[transfer.group(2)] if transfer else 0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    errors += int(number(r"Non-2xx or 3xx responses: (\d+)"))
    return {"rps": requests, "mib": mib, "p50": latency(50), "p99": latency(99), "errors": errors}


@contextmanager
def running(proxy, work):
    """
    Start C{proxy} pinned to CPU 0 for one row, so its peak RSS is that
    row's; stop it afterwards.

    :returns: a context manager giving C{(port, pid)}.
    """
    port = free_port()
    process = subprocess.Popen(pinned(0, proxies(work, port)[proxy]), cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=raise_file_limit)
    try:
        wait_listening(port)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        install()
    chosen = args.only.split(",")
    scenarios = SCENARIOS
    if args.rows:
        scenarios = [(name, int(count)) for name, count in (row.split(":") for row in args.rows.split(","))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        origin_port = free_port()
        nginx = start_nginx(work, origin_port)
        try:
            wait_listening(origin_port)
            origin = f"{HOST}:{origin_port}"
            for name, connections in scenarios:
                result = run_wrk(origin_port, origin, name, connections, args.seconds, work, through_proxy=False)
                rows.append(("origin (nginx)", name, connections, result, float("nan")))
            for proxy in chosen:
                if proxy == "netproxy" and args.slow_client:
                    with running(proxy, work) as (port, pid):
                        slow = slow_download(port, origin, pid)
                for name, connections in scenarios:
                    with running(proxy, work) as (port, pid):
                        result = run_wrk(port, origin, name, connections, args.seconds, work, through_proxy=True)
                        rows.append((proxy, name, connections, result, peak_rss_mib(pid)))
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(15)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per row, proxy on CPU 0\n")
    if args.slow_client and "netproxy" in chosen:
        before, peak, received = slow
        print(f"netproxy, 256 MiB read at 8 MiB/s: {received / 2**20:.0f} MiB received, RSS {before:.1f} MiB "
              f"before, {peak:.1f} MiB at most (+{peak - before:.1f} MiB)\n")
    print("| proxy | size | conns | req/s | MiB/s | p50 ms | p99 ms | errors | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for proxy, name, connections, r, rss in rows:
        print(f"| {proxy} | {name} | {connections} | {r['rps']:.0f} | {r['mib']:.1f} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['errors']} | {rss:.0f} |")


if __name__ == "__main__":
    main()
