"""
Benchmark of netproxy's cache store: storing misses, evicting, and a large
cache's memory, disk, hits and restart.

nginx (Debian nginx-light) serves, on 127.0.0.1 with C{Cache-Control:
max-age=3600}, the same 1 KiB file under every path C{/n/ANYTHING} and the
same 1 MiB file under every C{/big/ANYTHING}. wrk (one thread) asks through
the proxy for a new path on every request (a Lua script counting
C{/n/TOKEN-2}, C{/n/TOKEN-3}, ..., a new TOKEN each run), so every request
of a caching proxy is a miss it stores. Rows (C{--rows}, all by default):

  1. C{fill}: unique 1 KiB URLs for C{--seconds} at 8 and 100 connections,
     through netproxy C{--no-cache} (its pass-through), netproxy with its
     cache, Squid with a C{ufs} C{cache_dir} (C{cache_mem 8 MB}, so objects
     live on disk; created with C{squid -z}) and Squid with no cache (C{cache
     deny all}), each started afresh. Afterwards a few of the first URLs are
     asked again with C{only-if-cached}: the column "stored" says how many
     were hits, and for netproxy how many entries its C{/metrics} counts.
     Targets: netproxy's fill over its own pass-through >= 0.8, over Squid
     ufs's fill >= 1.0.
  2. C{large}: unique 1 MiB URLs at 10 connections, stored misses against
     pass-through (the same proxies). Target: stored MiB/s over pass-through
     MiB/s >= 0.9. It writes seconds x MiB/s to disk (netproxy is given
     C{--cache-size 64G}, so nothing is evicted).
  3. C{eviction}: C{--eviction-entries} unique 1 KiB URLs (wrk stops once as
     many answers came) into a netproxy with room for all, then into one
     whose C{--cache-size} is a tenth of what the first one stored, from 100
     connections, sampling C{netproxy_cache_stored_bytes} on C{/metrics}
     every 100 ms during the fill. Targets: the largest sample over
     C{--cache-size} <= 1.05; the fill rate with eviction over the one
     without >= 0.9.
  4. C{scale}: C{--entries} unique 1 KiB URLs into a fresh netproxy from 50
     connections, then one more alone (the last entry written). Reported:
     the proxy's RSS; the cache directory's bytes on disk, apparent and
     allocated, over the bytes of the heads and bodies stored (entries x
     (the origin's response head + 1 KiB); target <= 1.5); hits over random
     stored URLs against hits on one URL (C{--seconds} each at 100
     connections; target >= 0.9); then SIGTERM and a restart on the same
     directory, polled from spawning twistd with C{only-if-cached} (a 504 for
     what is not found yet): the first answer, the first HIT (the last
     entry written; target <= 1 s) and when 2,000 random entries (those that
     were hits before the stop) and the last one were all HITs (target <=
     15 s); a start on an empty directory gives the interpreter's own
     start-up. Last, the reactor's longest stall (C{/metrics}: the
     monitor of L{netproxy.stalls}) during the fill, the hit load and the
     restart (target <= 50 ms): the longest since the process started, read
     after each phase, and the stalls over 50 ms counted in each.

The proxy under test is pinned to CPU 0 with taskset; nginx, wrk and this
script share CPU 1. Tables are printed in Markdown, each target's ratio
marked met or MISSED.

    python bench/cache_store.py [--rows fill,large,eviction,scale] [--only netproxy,squid] [--seconds 10]
                                [--entries 1000000] [--eviction-entries 200000] [--max-fill-seconds 3600]
                                [--baseline DIR] [--install]

C{--baseline DIR} runs every netproxy row also with the netproxy of another
source tree (run by DIR/.venv/bin/python when there is one), named
netproxy@<git describe of DIR>, with its own targets. C{--install} installs
what is missing (apt-get: nginx-light, wrk, squid). Everything it starts
is stopped at the end; all traffic stays on 127.0.0.1; every loop is
bounded in count and time: a count-bounded fill (wrk interrupted once it
says the count was reached) stops after C{--max-fill-seconds} all the same.
A baseline without the stall metrics shows "n/a" for them.
"""

import argparse
import asyncio
import http.client
import os
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from support import (
    HOST,
    RESULT_COLUMNS,
    SIZES,
    cache_status,
    describe_netproxies,
    exchanges,
    free_port,
    install,
    netproxies,
    parse_wrk,
    peak_rss_mib,
    pin_this_process,
    pinned,
    poll,
    raise_file_limit,
    result_cells,
    rss_mib,
    spawn,
    squid,
    start_nginx,
    stop,
    stop_nginx,
    wait_listening,
    write_files,
)

PACKAGES = [("nginx-light", "nginx"), ("wrk", "wrk"), ("squid", "squid")]
ROWS = ("fill", "large", "eviction", "scale")
FILL_CONNECTIONS = (8, 100)
LARGE_CONNECTIONS = 10
EVICTION_CONNECTIONS = 100
#: Connections of the scale row's fill (as http_cache.py's restart row) and of its hit loads.
SCALE_CONNECTIONS = 50
HIT_CONNECTIONS = 100
#: A --cache-size no row without eviction reaches.
NO_EVICTION = "64G"
SQUID_UFS_MB = 8192
SQUID_DISK = ["cache_mem 8 MB", "maximum_object_size_in_memory 64 KB", "maximum_object_size 4 MB",
              "client_db off"]
SQUID_PASS = ["cache deny all", "client_db off"]
#: Paths asked again with only-if-cached after a fill, and the sample checked after a restart.
CHECKED = 5
SAMPLE = 2000
#: Seconds between two samples of /metrics during the eviction row's fill.
SAMPLE_PAUSE = 0.1
#: Seconds for the sample to be all HITs after a restart, and for one scrape.
SAMPLE_SECONDS = 120
SCRAPE_SECONDS = 10
STALL = "0.05"

#: wrk asks a script for one request before its connections start and drops
#: it, so the paths sent start at 2.
FIRST = 2
#: One new path per request; after LIMIT answers (0: never) the thread stops
#: and says so, and this script interrupts wrk, whose own clock then stops.
UNIQUE_LUA = """
local counter, answers, limit = 0, 0, {limit}
request = function()
  counter = counter + 1
  return wrk.format("GET", "{prefix}" .. counter)
end
response = function(status, headers, body)
  answers = answers + 1
  if answers == limit then
    io.write("FILLED\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""
#: A random one of the paths stored, the same sequence every run.
RANDOM_LUA = """
math.randomseed(16)
request = function()
  return wrk.format("GET", "{prefix}" .. math.random({first}, {last}))
end
"""


def start_origin(work, port):
    """
    Start nginx on C{port}: every C{/n/ANYTHING} is the 1 KiB file, every
    C{/big/ANYTHING} the 1 MiB one, cacheable for an hour.

    :returns: the L{subprocess.Popen}.
    """
    root = work / "www"
    write_files(root)
    servers = f"""
  server {{ listen {HOST}:{port}; root {root};
    add_header Cache-Control "max-age=3600" always;
    location /n/ {{ try_files /1k =404; }}
    location /big/ {{ try_files /1m =404; }} }}"""
    return start_nginx(work, servers)


def origin_head_bytes(port):
    """
    :returns: the bytes of the head of nginx's answer for a C{/n/} path:
        with the body, what an entry holds at the least.
    """
    connection = http.client.HTTPConnection(HOST, port, timeout=SCRAPE_SECONDS)
    try:
        connection.request("GET", "/n/head")
        response = connection.getresponse()
        response.read()
        status_line = f"HTTP/1.1 {response.status} {response.reason}\r\n"
        return len(status_line) + sum(len(f"{name}: {value}\r\n") for name, value in response.getheaders()) + 2
    finally:
        connection.close()


def scrape(port):
    """
    :returns: C{{sample: value}} of the proxy's C{/metrics}, keyed by the
        sample as written (C{name{labels}}); C{{}} when it has none.
    """
    connection = http.client.HTTPConnection(HOST, port, timeout=SCRAPE_SECONDS)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
    except OSError:
        return {}
    finally:
        connection.close()
    if response.status != 200:
        return {}
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def stalls(samples):
    """
    :returns: C{(longest stall, stalls over 50 ms)} in a scrape, C{None}
        for each a netproxy without the metrics lacks.
    """
    return (samples.get("netproxy_reactor_longest_stall_seconds"),
            samples.get(f'netproxy_reactor_stalls_total{{over="{STALL}"}}'))


def unique_script(work, origin, kind, limit=0):
    """
    Write a wrk script asking for a new C{/KIND/TOKEN-N} on every request.

    :param limit: answers after which wrk's thread stops (0: none).
    :returns: C{(script, /KIND/TOKEN-)}; the N of the paths sent run from
        L{FIRST}.
    """
    token = os.urandom(6).hex()
    path = f"/{kind}/{token}-"
    script = work / f"unique-{token}.lua"
    script.write_text(UNIQUE_LUA.format(limit=limit, prefix=f"http://{origin}{path}"))
    return script, path


def wrk(port, script, connections, seconds, sample=None):
    """
    Run wrk (one thread, on CPU 1) with C{script} through the proxy on
    C{port} for at most C{seconds}, interrupting it once the script says it
    is done; call C{sample} every L{SAMPLE_PAUSE} meanwhile.

    :returns: L{parse_wrk}'s figures, with C{"filled"}: whether the script
        said it was done.
    """
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script),
            f"http://{HOST}:{port}/"]
    process = subprocess.Popen(pinned(1, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               preexec_fn=raise_file_limit)
    output, filled, sampled = b"", False, 0.0
    deadline = time.monotonic() + seconds + 60
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(SAMPLE_PAUSE):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output += chunk
                    if not filled and b"FILLED\n" in output:
                        filled = True
                        process.send_signal(signal.SIGINT)
                if sample is not None and time.monotonic() - sampled >= SAMPLE_PAUSE:
                    sampled = time.monotonic()
                    sample()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    return {**parse_wrk(output.decode("utf-8", "replace")), "filled": filled}


def fill_rate(command, count_entries, work, origin, kind, connections, seconds):
    """
    Start a proxy, send it C{seconds} of unique C{/KIND/} URLs, then ask for
    the first few again with C{only-if-cached}.

    :param command: a function of a port giving the proxy's command line.
    :param count_entries: whether to count the entries on C{/metrics} (netproxy with a cache).
    :returns: C{(wrk result, peak RSS, stored)}: C{stored} says how many of
        the first L{CHECKED} were hits, and the entries C{/metrics} counts.
    """
    port = free_port()
    process = spawn(command(port), work)
    try:
        wait_listening(port)
        script, path = unique_script(work, origin, kind)
        result = wrk(port, script, connections, seconds)
        paths = [f"{path}{n}" for n in range(FIRST, FIRST + CHECKED)]
        answers = asyncio.run(exchanges(port, origin, paths, only_if_cached=True))
        hits = sum(1 for status, headers, _ in answers.values() if status == 200 and hit(headers))
        stored = f"{hits}/{CHECKED} HIT"
        if count_entries:
            entries = scrape(port).get("netproxy_cache_entries")
            stored += f", {entries:,.0f} entries" if entries is not None else ""
        return result, peak_rss_mib(process.pid), stored
    finally:
        stop(process)


def hit(headers):
    """
    :returns: whether an answer says it was a hit, as netproxy
        (C{Cache-Status}) or Squid (C{X-Cache}) says it.
    """
    return "hit" in cache_status(headers) or headers.get("x-cache", "").startswith("HIT")


def squid_disk(work):
    """
    :returns: a function of a port giving the command line of Squid with a
        fresh ufs cache directory, created (C{squid -z}) on the way.
    """
    def command(port):
        cache = Path(tempfile.mkdtemp(dir=work, prefix="squid-ufs-"))
        cache.chmod(0o755)
        if os.geteuid() == 0:
            # Squid run by root works as its cache_effective_user.
            shutil.chown(cache, "proxy", "proxy")
        argv = squid(work, port, f"cache_dir ufs {cache} {SQUID_UFS_MB} 16 256", *SQUID_DISK)
        subprocess.run([*argv, "-z"], check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return argv
    return command


def netproxy_cache(netproxy, work):
    """
    :returns: a function of a port giving C{netproxy}'s command line with a
        cache in a new directory of its own, with room for all it is sent.
    """
    cache = tempfile.mkdtemp(dir=work, prefix="cache-")
    return lambda port: netproxy.http(port, "--cache-dir", cache, "--cache-size", NO_EVICTION)


def store_rows(chosen, peers, work, origin, kind, connections_list, seconds):
    """
    Run the fill or large rows: every proxy, stored misses and pass-through.

    :returns: C{[(proxy, load, connections, result, peak RSS, stored)]}.
    """
    rows = []
    for connections in connections_list:
        for netproxy in chosen:
            for load, command, counted in [("pass-through", lambda port: netproxy.http(port, "--no-cache"), False),
                                           ("stored misses", netproxy_cache(netproxy, work), True)]:
                rows.append((netproxy.name, load, connections,
                             *fill_rate(command, counted, work, origin, kind, connections, seconds)))
        if "squid" in peers:
            for load, command in [("pass-through", lambda port: squid(work, port, *SQUID_PASS)),
                                  ("stored misses (ufs)", squid_disk(work))]:
                rows.append(("squid", load, connections,
                             *fill_rate(command, False, work, origin, kind, connections, seconds)))
    return rows


def print_rows(title, rows):
    print(f"{title}\n")
    print(f"| proxy | load | conns | {RESULT_COLUMNS} | peak RSS MiB | stored |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for proxy, load, connections, result, rss, stored in rows:
        print(f"| {proxy} | {load} | {connections} | {result_cells(result)} | {rss:.0f} | {stored} |")
    print()


def verdict(what, value, target, at_most=False, places=3):
    """
    :returns: a line saying C{value} (with C{places} decimals) against its
        C{target} (at least, or at most), met or MISSED; C{n/a} when there
        is no value.
    """
    if value is None:
        return f"- {what}: n/a"
    met = value <= target if at_most else value >= target
    return (f"- {what}: {value:,.{places}f} (target {'<=' if at_most else '>='} {target}: "
            f"{'met' if met else 'MISSED'})")


def ratio(numerator, denominator):
    return None if numerator is None or not denominator else numerator / denominator


def print_fill_targets(rows, chosen, key, pairs):
    """
    Print, for each netproxy, the ratios of its stored misses to the loads
    the targets name.

    :param key: C{"rps"} or C{"mib"}.
    :param pairs: C{(title, other proxy or None for the same netproxy, other load, target)}.
    """
    found = {(proxy, load, connections): result for proxy, load, connections, result, _, _ in rows}
    for netproxy in chosen:
        lines = []
        for connections in sorted({connections for _, _, connections, _, _, _ in rows}):
            mine = found.get((netproxy.name, "stored misses", connections))
            for title, proxy, load, target in pairs:
                other = found.get((proxy or netproxy.name, load, connections))
                if mine is not None and other is not None:
                    lines.append(verdict(f"{connections} conns, {title}", ratio(mine[key], other[key]), target))
        if lines:
            print(f"Targets of {netproxy.name}:\n")
            print("\n".join(lines) + "\n")


def eviction_row(netproxy, work, origin, entries, limit_seconds):
    """
    Fill C{entries} unique URLs into a netproxy with room for all, then into
    one with a tenth of what that one stored, sampling its stored bytes.

    :returns: a dict of figures, as L{print_eviction} prints them.
    """
    figures = {}
    for phase in ("without", "with"):
        size = NO_EVICTION if phase == "without" else str(max(1, figures["stored"] // 10))
        cache = tempfile.mkdtemp(dir=work, prefix="eviction-cache-")
        port = free_port()
        process = spawn(netproxy.http(port, "--cache-dir", cache, "--cache-size", size), work)
        samples = []
        try:
            wait_listening(port)
            script, _ = unique_script(work, origin, "n", entries)

            def sample():
                stored = scrape(port).get("netproxy_cache_stored_bytes")
                if stored is not None:
                    samples.append(stored)

            # Both fills are sampled, so that the scrapes cost them alike.
            result = wrk(port, script, EVICTION_CONNECTIONS, limit_seconds, sample)
            after = scrape(port)
        finally:
            stop(process)
        figures[phase] = result
        if phase == "without":
            figures["stored"] = int(after.get("netproxy_cache_stored_bytes", 0))
            figures["entries"] = after.get("netproxy_cache_entries")
        else:
            figures["cache size"] = int(size)
            figures["disk"] = disk_usage(cache)
            figures["samples"] = len(samples)
            figures["largest"] = max(samples, default=None)
            figures["evictions"] = after.get("netproxy_cache_evictions_total")
            figures["entries with"] = after.get("netproxy_cache_entries")
    return figures


def print_eviction(name, entries, figures):
    without, with_ = figures["without"], figures["with"]
    print(f"{name}: {entries:,} unique 1 KiB URLs from {EVICTION_CONNECTIONS} connections (wrk stopped once as many "
          f"answers came; {'both' if without['filled'] and with_['filled'] else 'NOT both'} reached it). Without "
          f"eviction {figures['stored']:,} bytes were stored in {figures['entries'] or 0:,.0f} entries; with "
          f"--cache-size {figures['cache size']:,} (a tenth) {figures['evictions'] or 0:,.0f} entries were evicted "
          f"and {figures['entries with'] or 0:,.0f} remained, the directory holding {figures['disk'][1]:,} bytes "
          f"(apparent) once the fill was over; stored bytes sampled {figures['samples']} times.\n")
    print(f"| fill | {RESULT_COLUMNS} | largest stored bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| without eviction | {result_cells(without)} | {figures['stored']:,} |")
    largest = figures["largest"]
    print(f"| with eviction | {result_cells(with_)} | {'n/a' if largest is None else f'{largest:,.0f}'} |\n")
    print(verdict("largest stored bytes / --cache-size", ratio(largest, figures["cache size"]), 1.05, at_most=True))
    print(verdict("fill rate with eviction / without, req/s", ratio(with_["rps"], without["rps"]), 0.9))
    print()


def disk_usage(directory):
    """
    :returns: C{(files, apparent bytes, allocated bytes)} under C{directory}.
    """
    files = apparent = allocated = 0
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                status = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            files += 1
            apparent += status.st_size
            allocated += status.st_blocks * 512
    return files, apparent, allocated


async def all_hits(port, origin, paths, started):
    """
    Ask for C{paths} with C{only-if-cached}, again and again for those not
    yet a HIT, until every one is or L{SAMPLE_SECONDS} after C{started}.

    :returns: the seconds after C{started} when the last one was a HIT, or
        C{None}; and how many never were.
    """
    left = list(paths)
    while left and time.monotonic() - started < SAMPLE_SECONDS:
        try:
            answers = await exchanges(port, origin, left, SCALE_CONNECTIONS, only_if_cached=True)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            answers = {}
        left = [path for path in left if path not in answers or "hit" not in cache_status(answers[path][1])]
        if left:
            await asyncio.sleep(0.01)
    return (None if left else time.monotonic() - started), len(left)


def scale_row(netproxy, work, origin, entries, seconds, limit_seconds, head_bytes):
    """
    Fill C{entries} entries, measure memory, disk and hits, restart.

    :returns: a dict of figures, as L{print_scale} prints them.
    """
    cache = Path(tempfile.mkdtemp(dir=work, prefix="scale-cache-"))
    figures = {"entries asked": entries}
    port = free_port()
    process = spawn(netproxy.http(port, "--cache-dir", str(cache), "--cache-size", NO_EVICTION), work)
    try:
        wait_listening(port)
        script, path = unique_script(work, origin, "n", entries)
        figures["fill"] = wrk(port, script, SCALE_CONNECTIONS, limit_seconds)
        last = f"{path}last"
        # Alone, after every other answer: the last entry written.
        asyncio.run(exchanges(port, origin, [last]))
        filled = scrape(port)
        figures["fill stalls"] = stalls(filled)
        figures["entries"] = filled.get("netproxy_cache_entries")
        figures["stored bytes"] = filled.get("netproxy_cache_stored_bytes")
        figures["RSS"], figures["peak RSS"] = rss_mib(process.pid), peak_rss_mib(process.pid)
        figures["disk"] = disk_usage(cache)
        figures["entry bytes"] = head_bytes + SIZES["1k"]
        figures["heads and bodies"] = (figures["entries"] or 0) * figures["entry bytes"]

        one = work / "one.lua"
        one.write_text(f'wrk.path = "http://{origin}{path}{FIRST}"\n')
        figures["one hit"] = wrk(port, one, HIT_CONNECTIONS, seconds)
        before = scrape(port)
        many = work / "random.lua"
        many.write_text(RANDOM_LUA.format(prefix=f"http://{origin}{path}", first=FIRST, last=entries + FIRST - 1))
        figures["random hits"] = wrk(port, many, HIT_CONNECTIONS, seconds)
        loaded = scrape(port)
        longest, over = stalls(loaded)
        # Counted from the start: the fill's are taken off.
        figures["load stalls"] = (longest, None if over is None else over - figures["fill stalls"][1])
        moved = {key: value - before.get(key, 0) for key, value in loaded.items()
                 if key.startswith("netproxy_cache_requests_total")}
        figures["random hit share"] = ratio(moved.get('netproxy_cache_requests_total{result="HIT"}'),
                                            sum(moved.values()))

        chosen = [f"{path}{n}" for n in random.Random(16).sample(range(FIRST, entries + FIRST), min(SAMPLE, entries))]
        answers = asyncio.run(exchanges(port, origin, chosen, SCALE_CONNECTIONS, only_if_cached=True))
        sample = [p for p in chosen if p in answers and "hit" in cache_status(answers[p][1])]
        figures["sample"] = (len(sample), len(chosen))
    finally:
        figures["stop seconds"] = stop(process)

    port = free_port()
    started = time.monotonic()
    process = spawn(netproxy.http(port, "--cache-dir", tempfile.mkdtemp(dir=work, prefix="empty-cache-")), work)
    try:
        figures["empty first answer"], _ = asyncio.run(poll(port, origin, last, started, until_hit=False))
        figures["empty RSS"] = rss_mib(process.pid)
    finally:
        stop(process)

    port = free_port()
    started = time.monotonic()
    process = spawn(netproxy.http(port, "--cache-dir", str(cache), "--cache-size", NO_EVICTION), work)
    try:
        figures["first answer"], figures["first hit"] = asyncio.run(poll(port, origin, last, started, until_hit=True))
        figures["all sampled"], figures["never"] = asyncio.run(all_hits(port, origin, [last, *sample], started))
        restarted = scrape(port)
        figures["restart stalls"] = stalls(restarted)
        figures["restart RSS"] = rss_mib(process.pid)
    finally:
        stop(process)
    return figures


def seconds_cell(value):
    return "never" if value is None else f"{value:.3f}"


def stall_cells(pair):
    longest, over = pair
    return f"{'n/a' if longest is None else f'{longest * 1000:.1f}'} | {'n/a' if over is None else f'{over:.0f}'}"


def print_scale(name, figures):
    entries = figures["entries"]
    fill = figures["fill"]
    files, apparent, allocated = figures["disk"]
    heads = figures["heads and bodies"]
    sampled, chosen = figures["sample"]
    print(f"{name}: {figures['entries asked']:,} unique 1 KiB URLs from {SCALE_CONNECTIONS} connections "
          f"({'all answered' if fill['filled'] else 'NOT all answered'} within the time bound) at "
          f"{fill['rps']:.0f} req/s, {fill['errors']} errors; /metrics counts "
          f"{'n/a' if entries is None else f'{entries:,.0f}'} entries. SIGTERM stopped it in "
          f"{figures['stop seconds']:.2f} s.\n")
    print("| figure | value |")
    print("|---|---:|")
    print(f"| RSS after the fill, MiB (peak) | {figures['RSS']:.0f} ({figures['peak RSS']:.0f}) |")
    print(f"| RSS of a start on an empty directory, MiB | {figures['empty RSS']:.0f} |")
    print(f"| RSS after the restart and the sample's hits, MiB | {figures['restart RSS']:.0f} |")
    stored = figures["stored bytes"]
    print(f"| stored bytes (/metrics) | {'n/a' if stored is None else f'{stored:,.0f}'} |")
    print(f"| heads and bodies (entries x {figures['entry bytes']:,} bytes) | {heads:,.0f} |")
    print(f"| cache directory: files, apparent bytes, allocated bytes | {files:,}, {apparent:,}, {allocated:,} |")
    print(f"| hits on one URL, req/s ({HIT_CONNECTIONS} conns) | {figures['one hit']['rps']:.0f} |")
    share = figures["random hit share"]
    print(f"| hits on random stored URLs, req/s ({'n/a' if share is None else f'{share:.1%}'} HITs) | "
          f"{figures['random hits']['rps']:.0f} |")
    print(f"| restart, empty directory: first answer, s | {seconds_cell(figures['empty first answer'])} |")
    print(f"| restart: first answer, s | {seconds_cell(figures['first answer'])} |")
    print(f"| restart: first HIT (the last entry written), s | {seconds_cell(figures['first hit'])} |")
    print(f"| restart: {sampled:,} random entries (of {chosen:,} sampled, those HITs before the stop) and the last "
          f"all HITs, s | {seconds_cell(figures['all sampled'])} ({figures['never']} never) |")
    print()
    phases = (("the fill", "fill stalls"), ("the hit loads", "load stalls"),
              ("the restart, until the sample's HITs", "restart stalls"))
    print("| reactor stalls | longest since the process started, ms | stalls over 50 ms in the phase |")
    print("|---|---:|---:|")
    for title, key in phases:
        print(f"| {title} | {stall_cells(figures[key])} |")
    print()
    # What a million entries would take, growing from the empty process's
    # RSS as these did (the figure itself when a million were stored).
    million = None if not entries else (
        figures["empty RSS"] + (figures["RSS"] - figures["empty RSS"]) * 1_000_000 / entries)
    lines = [
        verdict("RSS with 1,000,000 entries, MiB" + ("" if (entries or 0) >= 1_000_000 else " (projected)"),
                million, 200, at_most=True, places=0),
        verdict("allocated bytes on disk / heads and bodies", ratio(allocated, heads), 1.5, at_most=True),
        verdict("hits on random URLs / hits on one URL, req/s", ratio(figures["random hits"]["rps"],
                                                                       figures["one hit"]["rps"]), 0.9),
        verdict("restart: first HIT, s", figures["first hit"], 1, at_most=True),
        verdict("restart: the sample all HITs, s", figures["all sampled"], 15, at_most=True),
        *(verdict(f"stalls over 50 ms during {title}", figures[key][1], 0, at_most=True, places=0)
          for title, key in phases),
    ]
    print(f"Targets of {name} (the RSS of {entries or 0:,.0f} entries scaled to a million above the empty "
          f"process's):\n")
    print("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, of {', '.join(ROWS)} (default: all)")
    parser.add_argument("--only", default="netproxy,squid",
                        help="peers to run in the fill and large rows besides netproxy: squid, or none")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk per time-bound load")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries stored in the scale row")
    parser.add_argument("--eviction-entries", type=int, default=200_000,
                        help="unique URLs of the eviction row (the cache gets a tenth of what they take)")
    parser.add_argument("--max-fill-seconds", type=int, default=3600,
                        help="the most a count-bound fill (eviction, scale) may take")
    parser.add_argument("--baseline", action="append", default=[], metavar="DIR",
                        help="also run every netproxy row with the netproxy of the source tree DIR (repeatable)")
    parser.add_argument("--install", action="store_true", help="install nginx-light, wrk and squid")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown or args.entries < 1 or args.eviction_entries < 1 or args.seconds < 1:
        parser.error(f"--rows takes {', '.join(ROWS)}; counts and seconds are positive")
    if args.install:
        install(PACKAGES)
    chosen = netproxies(args.baseline)
    description = describe_netproxies(chosen)
    peers = args.only.split(",")
    pin_this_process(1)
    fills = larges = []
    evictions, scales = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        nginx = start_origin(work, port)
        try:
            wait_listening(port)
            origin = f"{HOST}:{port}"
            head_bytes = origin_head_bytes(port)
            if "fill" in rows:
                fills = store_rows(chosen, peers, work, origin, "n", FILL_CONNECTIONS, args.seconds)
            if "large" in rows:
                larges = store_rows(chosen, peers, work, origin, "big", [LARGE_CONNECTIONS], args.seconds)
            if "eviction" in rows:
                evictions = [(n.name, eviction_row(n, work, origin, args.eviction_entries, args.max_fill_seconds))
                             for n in chosen]
            if "scale" in rows:
                scales = [(n.name, scale_row(n, work, origin, args.entries, args.seconds, args.max_fill_seconds,
                                             head_bytes)) for n in chosen]
        finally:
            stop_nginx(nginx)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.seconds} s per time-bound load, proxy on CPU 0\n")
    print(description + "\n")
    if fills:
        print_rows("Fill: a new 1 KiB URL on every request", fills)
        print_fill_targets(fills, chosen, "rps", [
            ("stored misses / own pass-through, req/s", None, "pass-through", 0.8),
            ("stored misses / Squid ufs stored misses, req/s", "squid", "stored misses (ufs)", 1.0)])
    if larges:
        print_rows("Large bodies: a new 1 MiB URL on every request", larges)
        print_fill_targets(larges, chosen, "mib", [("stored misses / own pass-through, MiB/s", None, "pass-through",
                                                    0.9)])
    for name, figures in evictions:
        print_eviction(name, args.eviction_entries, figures)
    for name, figures in scales:
        print_scale(name, figures)


if __name__ == "__main__":
    main()
