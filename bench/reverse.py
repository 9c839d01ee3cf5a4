"""
Benchmark of the message reverse proxy.

Starts real twistd processes on 127.0.0.1 and measures, in one run, the
messages per second and latency of the same load (C{--connections}
connections, each sending data messages one after another) sent:

  1. straight to one backend server (C{twistd netproxy server});
  2. through C{twistd netproxy reverse} to two backend servers of one policy.

With C{--shared-rows}, also through a switching table shared in a real
C{redis-server} (started on a port of its own, on CPU 1):

  3. one reverse proxy with C{--registry redis://}: beside row 2, the cost
     of the shared registry per message (one script call each);
  4. two reverse proxy instances sharing it, the connections split between
     them (both instances on CPU 0: their CPU time is summed);
  5. one reverse proxy with C{--registry redis:// --workers 2}.

The process under test (the backend in row 1, the reverse proxy in row 2) is
pinned to CPU 0 with taskset when there is one; everything else runs on
CPU 1. Prints a Markdown table and the ratio of row 2 to row 1. The
table's last columns are the CPU time the process under test spent per
message (from /proc), which holds better than the messages per second
when other work on the machine takes CPU time from the run, and that of
the two backends of row 2, which share CPU 1 with the load generator.

    python bench/reverse.py [--seconds 10] [--connections 50] [--baseline DIR]... [--repeat N] [--shared-rows]

C{--baseline DIR} measures both rows with the netproxy of another source
tree too (see L{support.baseline}), in the same run, and prints each
netproxy's ratio. C{--repeat N} runs N rounds, the netproxies in turn
(in reverse order every other round), and prints every round's table: the
ratio that counts is the one of a single run, each row beside the other.

The twistd processes log to their standard output, which is thrown away:
every event is still formatted and written, as an operator's log would be.
Not C{--logfile=/dev/null}: twistd rotates a log file at 1 MB by renaming
it, which turns /dev/null into a regular file (and C{/dev/null.1},
C{/dev/null.2} ...) once a row has logged that much.

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
from pathlib import Path

from support import HOST, describe_netproxies, free_port, netproxies, pinned, wait_listening

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
        return started[-1]

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
    # A list of ports: the connections are dealt out over them in turn.
    latencies, errors = [], []
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    ports = port if isinstance(port, list) else [port]
    await asyncio.gather(*(one_connection(ports[number % len(ports)], policy, deadline, latencies, errors)
                           for number in range(connections)))
    elapsed = time.monotonic() - started
    return latencies, errors, elapsed


def run_load(port, policy, connections, seconds):
    """
    The load generator runs in its own process, on the other CPU.
    """
    code = ("import asyncio, json, sys; sys.path.insert(0, %r); import reverse; "
            "l, e, t = asyncio.run(reverse.load(%r, %r, %d, %f)); "
            "print(json.dumps({'latencies': l, 'errors': [str(x) for x in e], 'elapsed': t}))"
            % (os.path.dirname(os.path.abspath(__file__)), port, policy, connections, seconds))
    output = subprocess.run(pinned(1, [sys.executable, "-c", code]), capture_output=True, text=True,
                            timeout=seconds + 60, check=True).stdout
    return json.loads(output)


def cpu_seconds(pid):
    """
    :returns: the CPU time (user and system) process C{pid} has used, in
        seconds, or C{nan} where /proc does not say.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime and stime, fields 14 and 15 of proc(5), counted from the state (field 3).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid):
    """
    :returns: L{cpu_seconds} of C{pid} and of its children (a main
        process's workers).
    """
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def run_measured(process, port, policy, connections, seconds, others=()):
    """
    L{run_load}, and the CPU time the process under test used meanwhile
    (and, apart, the processes C{others}): on a machine others share, its
    microseconds per message hold when the messages per second do not.
    """
    measured = process if isinstance(process, list) else [process]
    before = sum(tree_cpu_seconds(one.pid) for one in measured)
    others_before = sum(cpu_seconds(other.pid) for other in others)
    result = run_load(port, policy, connections, seconds)
    result["cpu"] = sum(tree_cpu_seconds(one.pid) for one in measured) - before
    result["others_cpu"] = sum(cpu_seconds(other.pid) for other in others) - others_before
    return result


def summarise(name, result):
    latencies = sorted(result["latencies"])
    count = len(latencies)
    p50 = statistics.median(latencies) * 1000 if count else float("nan")
    p99 = latencies[min(count - 1, int(count * 0.99))] * 1000 if count else float("nan")
    rate = count / result["elapsed"]
    cpu = result["cpu"] / count * 1e6 if count else float("nan")
    others = result.get("others_cpu", 0.0) / count * 1e6 if count else float("nan")
    return {"name": name, "rate": rate, "p50": p50, "p99": p99, "errors": len(result["errors"]), "count": count,
            "cpu": cpu, "others_cpu": others}


def measure(netproxy, workdir, connections, seconds, shared=False):
    """
    :returns: the rows of C{netproxy}: straight to one backend, then
        through the reverse proxy to two; and with C{shared}, the rows of
        the registry in Redis.
    """
    def twistd(*args):
        # Standard output, which processes() throws away: see the docstring.
        return netproxy.twistd(*args, logfile="-")

    rows = []
    with processes(workdir) as start:
        direct = free_port()
        server = start(pinned(0, twistd("server", "--id", "1", "--pp", "PP_BENCH", "--listen", str(direct),
                                        "--revproc", str(free_port()))))
        wait_listening(direct)
        rows.append(summarise("straight to one backend", run_measured(server, direct, "PP_BENCH", connections,
                                                                      seconds)))
    with processes(workdir) as start:
        reverse = free_port()
        proxy = start(pinned(0, twistd("reverse", "--port", str(reverse))))
        wait_listening(reverse)
        backends = [start(pinned(1, twistd("server", "--id", str(server_id), "--pp", "PP_BENCH", "--listen",
                                           str(free_port()), "--revproc", str(reverse))))
                    for server_id in (1, 2)]
        wait_registered(reverse, "PP_BENCH", {1, 2})
        rows.append(summarise("through reverse to two backends", run_measured(proxy, reverse, "PP_BENCH", connections,
                                                                              seconds, backends)))
    if shared:
        for name, instances, extra in [("reverse, registry in Redis", 1, ()),
                                       ("two reverse instances sharing Redis", 2, ()),
                                       ("reverse --workers 2, registry in Redis", 1, ("--workers", "2"))]:
            with processes(workdir) as start:
                redis = free_port()
                start(pinned(1, ["redis-server", "--port", str(redis), "--bind", HOST, "--save", "", "--appendonly",
                                 "no"]))
                wait_listening(redis)
                registry = f"redis://{HOST}:{redis}/0"
                ports = [free_port() for _ in range(instances)]
                proxies = [start(pinned(0, twistd("reverse", "--port", str(port), "--registry", registry, *extra)))
                           for port in ports]
                for port in ports:
                    wait_listening(port)
                backends = [start(pinned(1, twistd("server", "--id", str(server_id), "--pp", "PP_BENCH", "--listen",
                                                   str(free_port()), "--revproc", str(ports[0]))))
                            for server_id in (1, 2)]
                for port in ports:
                    wait_registered(port, "PP_BENCH", {1, 2})
                rows.append(summarise(name, run_measured(proxies, ports, "PP_BENCH", connections, seconds,
                                                         backends)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--baseline", action="append", default=[], metavar="DIR",
                        help="also measure the netproxy of the source tree DIR (a checkout of another commit), with "
                             "DIR/.venv/bin/python when it exists and this interpreter otherwise (repeatable)")
    parser.add_argument("--shared-rows", action="store_true",
                        help="also measure the registry in Redis: one instance, two instances sharing it, and "
                             "--workers 2 (needs redis-server)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run N rounds, the netproxies in turn, and print each round (default: 1)")
    args = parser.parse_args()
    chosen = netproxies(args.baseline)
    print(f"{args.connections} connections, {args.seconds:g} s each, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}\n\n{describe_netproxies(chosen)}")
    for round_ in range(args.repeat):
        order = chosen if round_ % 2 == 0 else chosen[::-1]
        measured = {}
        with tempfile.TemporaryDirectory() as workdir:
            for netproxy in order:
                measured[netproxy.name] = measure(netproxy, workdir, args.connections, args.seconds,
                                                  args.shared_rows)
        if args.repeat > 1:
            print(f"\nround {round_ + 1} of {args.repeat} ({', '.join(n.name for n in order)}, in that order)")
        print("\n| netproxy | load | messages/s | p50 ms | p99 ms | errors | CPU us/message | backends' CPU us/message |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for netproxy in chosen:
            for row in measured[netproxy.name]:
                others = f"{row['others_cpu']:.0f}" if row["others_cpu"] else "-"
                print(f"| {netproxy.name} | {row['name']} | {row['rate']:.0f} | {row['p50']:.2f} | {row['p99']:.2f} "
                      f"| {row['errors']} | {row['cpu']:.0f} | {others} |")
        print()
        for netproxy in chosen:
            direct, reverse, *shared = measured[netproxy.name]
            print(f"ratio (reverse / direct), {netproxy.name}: {reverse['rate'] / direct['rate']:.2f}x messages/s, "
                  f"p99 {reverse['p99'] / direct['p99']:.2f}x")
            for row in shared:
                print(f"ratio ({row['name']} / direct), {netproxy.name}: {row['rate'] / direct['rate']:.2f}x "
                      f"messages/s, p99 {row['p99'] / direct['p99']:.2f}x")
            if shared:
                print(f"the registry in Redis costs the reverse proxy {shared[0]['cpu'] - reverse['cpu']:.0f} us of "
                      f"CPU per message ({shared[0]['cpu']:.0f} vs {reverse['cpu']:.0f})")


if __name__ == "__main__":
    main()
