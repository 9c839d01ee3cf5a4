"""
Benchmark of the message reverse proxy.

Starts real twistd processes on 127.0.0.1 and measures, in one run, the
messages per second and latency of the same load (C{--connections}
connections, each sending data messages one after another) sent:

  1. straight to one backend server (C{twistd netproxy server});
  2. through C{twistd netproxy reverse} to two backend servers of one policy.

The process under test (the backend in row 1, the reverse proxy in row 2) is
pinned to CPU 0 with taskset when there is one; everything else runs on
CPU 1. Prints a Markdown table and the ratio of row 2 to row 1.

    python bench/reverse.py [--seconds 10] [--connections 50]

Every loop is bounded in time and count; all traffic stays on 127.0.0.1.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from support import HOST, free_port, pinned, twistd, wait_listening

MAX_MESSAGES_PER_CONNECTION = 1_000_000


def wait_registered(port, policy, server_ids, seconds=15):
    """
    Send messages until every server in C{server_ids} has answered one.
    """
    seen = set()
    deadline = time.monotonic() + seconds
    while seen != server_ids and time.monotonic() < deadline:
        with socket.create_connection((HOST, port), timeout=5) as client:
            client.sendall(json.dumps({"type": 0, "srcid": 0, "privPoliId": policy, "payload": "ping"}).encode())
            answer = json.loads(client.makefile("rb").readline())
        if answer.get("type") == 2:
            seen.add(answer["srcid"])
        else:
            time.sleep(0.1)
    if seen != server_ids:
        raise RuntimeError(f"servers {server_ids - seen} did not register within {seconds} s")


@contextmanager
def processes(workdir):
    started = []

    def start(argv):
        started.append(subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        yield start
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def one_connection(port, policy, deadline, latencies, errors):
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        errors.append("connect")
        return
    for number in range(MAX_MESSAGES_PER_CONNECTION):
        if time.monotonic() >= deadline:
            break
        message = {"type": 0, "srcid": 50, "privPoliId": policy, "payloadsize": 12, "payload": f"message {number:04d}"}
        started = time.perf_counter()
        writer.write(json.dumps(message).encode() + b"\n")
        line = await reader.readline()
        if not line.endswith(b"\n") or json.loads(line).get("type") != 2:
            errors.append(line[:80])
            break
        latencies.append(time.perf_counter() - started)
    writer.close()


async def load(port, policy, connections, seconds):
    latencies, errors = [], []
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(one_connection(port, policy, deadline, latencies, errors) for _ in range(connections)))
    elapsed = time.monotonic() - started
    return latencies, errors, elapsed


def run_load(port, policy, connections, seconds):
    """
    The load generator runs in its own process, on the other CPU.
    """
    code = ("import asyncio, json, sys; sys.path.insert(0, %r); import reverse; "
            "l, e, t = asyncio.run(reverse.load(%d, %r, %d, %f)); "
            "print(json.dumps({'latencies': l, 'errors': [str(x) for x in e], 'elapsed': t}))"
            % (os.path.dirname(os.path.abspath(__file__)), port, policy, connections, seconds))
    output = subprocess.run(pinned(1, [sys.executable, "-c", code]), capture_output=True, text=True,
                            timeout=seconds + 60, check=True).stdout
    return json.loads(output)


def summarise(name, result):
    latencies = sorted(result["latencies"])
    count = len(latencies)
    p50 = statistics.median(latencies) * 1000 if count else float("nan")
    p99 = latencies[min(count - 1, int(count * 0.99))] * 1000 if count else float("nan")
    rate = count / result["elapsed"]
    return {"name": name, "rate": rate, "p50": p50, "p99": p99, "errors": len(result["errors"]), "count": count}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        with processes(workdir) as start:
            direct = free_port()
            start(pinned(0, twistd("server", "--id", "1", "--pp", "PP_BENCH", "--listen", str(direct),
                                   "--revproc", str(free_port()))))
            wait_listening(direct)
            rows.append(summarise("straight to one backend", run_load(direct, "PP_BENCH", args.connections, args.seconds)))
        with processes(workdir) as start:
            reverse = free_port()
            start(pinned(0, twistd("reverse", "--port", str(reverse))))
            wait_listening(reverse)
            for server_id in (1, 2):
                start(pinned(1, twistd("server", "--id", str(server_id), "--pp", "PP_BENCH", "--listen",
                                       str(free_port()), "--revproc", str(reverse))))
            wait_registered(reverse, "PP_BENCH", {1, 2})
            rows.append(summarise("through reverse to two backends", run_load(reverse, "PP_BENCH", args.connections,
                                                                              args.seconds)))
    print(f"{args.connections} connections, {args.seconds:g} s each, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}\n")
    print("| load | messages/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['rate']:.0f} | {row['p50']:.2f} | {row['p99']:.2f} | {row['errors']} |")
    print(f"\nratio (reverse / direct): {rows[1]['rate'] / rows[0]['rate']:.2f}x messages/s, "
          f"p99 {rows[1]['p99'] / rows[0]['p99']:.2f}x")


if __name__ == "__main__":
    main()
