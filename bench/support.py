"""
What the benchmarks share: free loopback ports, CPU pinning, waiting for a
listener, the command lines of the processes they start (twistd netproxy,
nginx, Squid, proxy.py), running wrk and reading its report, the peak RSS
of a process, the netproxy trees compared in one run (C{--baseline})
with the ratios that compare them, and a small asyncio HTTP/1.1 client for
the cache benchmarks (requests through a proxy, C{only-if-cached} polls of
a restarting one).
"""

import asyncio
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

HOST = "127.0.0.1"
#: The files nginx serves, by name.
SIZES = {"1k": 1024, "64k": 64 * 1024, "1m": 1024 * 1024}
PROXYPY_VENV = Path(os.environ.get('NETPROXY_BENCH_PROXYPY', Path(tempfile.gettempdir()) / 'netproxy-bench-proxypy'))
LUA = 'wrk.path = "http://{origin}/{name}"\n'
#: The columns of a wrk result, as L{result_cells} fills them.
RESULT_COLUMNS = "req/s | MiB/s | p50 ms | p99 ms | errors"
#: Seconds any one client exchange may take.
EXCHANGE_SECONDS = 30
#: Seconds a restarted proxy has to serve its first hit, and the pause between two tries.
RESTART_SECONDS = 30
POLL_PAUSE = 0.002
MAX_POLLS = int(RESTART_SECONDS / POLL_PAUSE)
MAX_CHUNKS = 100_000


def free_port():
    """
    :returns: a TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def pinned(cpu, argv):
    """
    :returns: C{argv} run on CPU C{cpu} only, when taskset and a second CPU exist.
    """
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def pin_this_process(cpu):
    """
    Run the rest of this process on CPU C{cpu}, when L{pinned} would pin a command.
    """
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


class Netproxy:
    """
    A netproxy to benchmark: the name of its rows, the interpreter that runs
    its twistd, and the source tree that interpreter imports it from.

    :ivar name: the name of its rows, such as C{netproxy@535b33a}.
    :ivar python: the interpreter, whose site-packages give Twisted and the
        other dependencies.
    :ivar tree: a directory put first on C{sys.path} (as C{PYTHONPATH}
        would), so that C{netproxy} and its twistd plugin come from it
        whatever the interpreter has installed; C{None} for whatever the
        interpreter imports.
    """

    def __init__(self, name, python, tree=None):
        self.name = name
        self.python = python
        self.tree = tree
        self._local_flags = None

    def twistd(self, *args, logfile="/dev/null"):
        """
        :param logfile: where twistd writes its log (default: nowhere).
        :returns: the command line of C{twistd netproxy ARGS...} in the
            foreground.
        """
        # Inserted before Twisted looks for plugins, so twisted/plugins/ of
        # the tree is searched too and its netproxy.tap is the one imported.
        first = f"sys.path.insert(0, {str(self.tree)!r}); " if self.tree else ""
        code = f"import sys; {first}from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
        return [self.python, "-c", code, "--nodaemon", "--pidfile=", f"--logfile={logfile}", "netproxy", *args]

    def http(self, port, *args, logfile="/dev/null"):
        """
        :param logfile: where twistd writes its log (default: nowhere).
        :returns: the command line of C{twistd netproxy http} listening on
            127.0.0.1:C{port} with room for a thousand connections and more,
            allowed to reach the benchmarks' local origins.
        """
        return self.twistd("http", "--listen", f"tcp:{port}:interface={HOST}:backlog=4096", "--max-connections",
                           "4096", *self.allow_local(), *args, logfile=logfile)

    def allow_local(self):
        """
        :returns: C{["--allow-local"]} when this tree's http role refuses
            local destinations unless told (it has the option), else C{[]}:
            older trees, such as a C{--baseline} from before it, allow them
            and do not know the option.  Asked once, from its C{--help}.
        """
        if self._local_flags is None:
            with tempfile.TemporaryDirectory() as empty:
                result = subprocess.run(self.twistd("http", "--help"), cwd=empty, capture_output=True, text=True,
                                        timeout=60)
            self._local_flags = ["--allow-local"] if "--allow-local" in result.stdout else []
        return self._local_flags

    def origin(self):
        """
        Ask the interpreter where it imports netproxy and Twisted from, from
        a directory with no netproxy in it, as the benchmarks start twistd.

        :returns: C{(netproxy package directory, Twisted version)}.
        """
        first = f"sys.path.insert(0, {str(self.tree)!r}); " if self.tree else ""
        code = f"import sys; {first}import netproxy, twisted; print(netproxy.__file__); print(twisted.__version__)"
        with tempfile.TemporaryDirectory() as empty:
            output = subprocess.run([self.python, "-c", code], cwd=empty, check=True, capture_output=True,
                                    text=True).stdout.split()
        return Path(output[0]).parent, output[1]


#: The netproxy the benchmark's own interpreter imports: "after", in a comparison.
THIS = Netproxy("netproxy", os.path.abspath(sys.executable))


def twistd(*args):
    """
    :returns: L{THIS}'s command line of C{twistd netproxy ARGS...}.
    """
    return THIS.twistd(*args)


def git_describe(directory):
    """
    :returns: C{git describe --always --dirty} of C{directory}, or C{None}
        outside a git work tree.
    """
    try:
        return subprocess.run(["git", "-C", str(directory), "describe", "--always", "--dirty"], check=True,
                              capture_output=True, text=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def add_baseline_option(parser):
    """
    Add C{--baseline DIR} and C{--repeat N} to C{parser}, the options that
    compare netproxy with another tree's in one run.
    """
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every row N times, the proxies in turn within each round (in reverse order every "
                             "other round), and report the run with the median req/s; odd N is best (default: 1)")
    parser.add_argument("--baseline", action="append", default=[], metavar="DIR",
                        help="also run, wherever netproxy runs, the netproxy of the source tree DIR (a checkout of "
                             "another commit), with DIR/.venv/bin/python when it exists and this interpreter "
                             "otherwise, DIR first on sys.path; its rows are named netproxy@<git describe of DIR>, "
                             "and the after/before ratio of each row is printed (repeatable)")


def baseline(directory):
    """
    :returns: the L{Netproxy} of the source tree C{directory}, run by the
        interpreter of its C{.venv} when it has one.
    :raises SystemExit: when C{directory} holds no netproxy package.
    """
    tree = Path(directory).resolve()
    if not (tree / "netproxy" / "__init__.py").exists():
        raise SystemExit(f"--baseline {directory}: no netproxy/__init__.py there")
    python = tree / ".venv" / "bin" / "python"
    # The venv's own path, not the interpreter it links to: that is what makes it the venv.
    python = str(python) if python.exists() else sys.executable
    return Netproxy(f"netproxy@{git_describe(tree) or tree.name}", python, tree)


def netproxies(directories):
    """
    :param directories: the C{--baseline} directories.
    :returns: L{THIS} then the L{baseline} of each of C{directories}, each
        named once, having checked that each imports netproxy from its tree.
    :raises SystemExit: when a baseline would import netproxy from elsewhere.
    """
    chosen, names = [THIS], {THIS.name}
    for directory in directories:
        candidate = baseline(directory)
        while candidate.name in names:
            candidate.name += "'"
        package, _ = candidate.origin()
        if package.resolve() != (candidate.tree / "netproxy").resolve():
            raise SystemExit(f"--baseline {directory}: {candidate.python} imports netproxy from {package}")
        chosen.append(candidate)
        names.add(candidate.name)
    return chosen


def describe_netproxies(chosen):
    """
    :returns: a line per netproxy: its name, source, git commit, interpreter
        and Twisted version.
    """
    lines = []
    for netproxy in chosen:
        package, twisted_version = netproxy.origin()
        commit = git_describe(package.parent) or "not a git tree"
        lines.append(f"- {netproxy.name}: {package} ({commit}), {netproxy.python}, Twisted {twisted_version}")
    return "\n".join(lines)


def squid(work, port, *directives):
    """
    Write a Squid configuration for one worker on 127.0.0.1:C{port}, with no
    access log, that stops at once on SIGTERM.

    :param directives: further lines of C{squid.conf}, such as C{"cache deny all"}.
    :returns: the command line running Squid in the foreground with it.
    """
    conf = work / "squid.conf"
    conf.write_text("".join(line + "\n" for line in [
        f"http_port {HOST}:{port}", *directives, "access_log none", "cache_log /dev/null",
        f"pid_filename {work}/squid.pid", "http_access allow all", "workers 1", "max_filedescriptors 8192",
        f"coredump_dir {work}", "shutdown_lifetime 0 seconds",
        # No ICMP helper, which would outlive Squid for half a minute.
        "pinger_enable off"]))
    return ["squid", "-N", "-f", str(conf)]


def proxypy(port):
    """
    :returns: the command line of proxy.py on 127.0.0.1:C{port}, one worker.
    """
    return [str(PROXYPY_VENV / "bin" / "proxy"), "--hostname", HOST, "--port", str(port), "--threadless",
            "--num-workers", "1", "--num-acceptors", "1", "--log-level", "WARNING", "--backlog", "4096"]


def install(packages):
    """
    Install what is missing: Debian C{packages} (package name, program name)
    with apt-get, and proxy.py from PyPI in its own virtualenv.
    """
    missing = [p for p, b in packages if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not (PROXYPY_VENV / "bin" / "proxy").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PROXYPY_VENV)], check=True)
        subprocess.run([str(PROXYPY_VENV / "bin" / "pip"), "install", "-q", "proxy.py"], check=True)


def raise_file_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def write_files(root):
    """
    Create C{root} with one file of random bytes for each of L{SIZES},
    readable by nginx's unprivileged worker.
    """
    root.mkdir(mode=0o755)
    for name, size in SIZES.items():
        (root / name).write_bytes(os.urandom(size))
        (root / name).chmod(0o644)


def start_nginx(work, servers):
    """
    Start nginx, one worker on CPU 1, with keep-alive connections that last
    and no access log unless a server asks for one.

    :param work: a directory for its configuration and pid file.
    :param servers: the C{server} blocks of its configuration.
    :returns: the L{subprocess.Popen}; stop it with SIGQUIT.
    """
    # nginx's worker runs as an unprivileged user: let it read the files.
    work.chmod(0o755)
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 60;
  {servers} }}
""")
    return subprocess.Popen(pinned(1, ["nginx", "-c", str(conf), "-p", str(work)]), preexec_fn=raise_file_limit)


def stop_nginx(nginx):
    nginx.send_signal(signal.SIGQUIT)
    try:
        nginx.wait(15)
    except subprocess.TimeoutExpired:
        nginx.kill()
        nginx.wait()


def wait_listening(port, seconds=20):
    """
    Wait until something accepts connections on 127.0.0.1:C{port}.

    :raises RuntimeError: after C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {seconds} s")


def stop(process, seconds=15):
    """
    SIGTERM C{process}, then SIGKILL it if it is still there after C{seconds}.

    :returns: the seconds it took to exit after SIGTERM.
    """
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def spawn(argv, work):
    """
    Start the process under test, C{argv}, pinned to CPU 0, its output discarded.

    :param work: its working directory.
    :returns: the L{subprocess.Popen}.
    """
    return subprocess.Popen(pinned(0, argv), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=raise_file_limit)


@contextmanager
def running(command, work):
    """
    Start a proxy pinned to CPU 0 on a free port, and stop it afterwards.

    :param command: called with the port, returns the proxy's command line.
    :param work: its working directory.
    :returns: a context manager giving C{(port, pid)}.
    """
    port = free_port()
    process = spawn(command(port), work)
    try:
        wait_listening(port)
        yield port, process.pid
    finally:
        stop(process)


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


def open_fds(pid):
    """
    :returns: how many file descriptors C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_wrk(target_port, origin, name, connections, seconds, work, through_proxy):
    """
    Run wrk (one thread, on CPU 1) for C{seconds} at C{connections}
    connections, requesting C{http://ORIGIN/NAME} from the proxy on
    C{target_port}, or C{/NAME} from the origin itself.

    :returns: L{parse_wrk}'s figures.
    """
    script = work / f"{name}.lua"
    script.write_text(LUA.format(origin=origin, name=name))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if through_proxy:
        argv += ["-s", str(script)]
    url = f"http://{HOST}:{target_port}/" + ("" if through_proxy else name)
    output = subprocess.run(pinned(1, argv + [url]), check=False, capture_output=True, text=True,
                            preexec_fn=raise_file_limit, timeout=seconds + 60).stdout
    return parse_wrk(output)


def parse_wrk(output):
    """
    :returns: requests/s, MiB/s, p50 and p99 in ms, and errors (wrk's socket
        errors plus non-2xx/3xx answers) from wrk's report.
    """
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


def result_cells(result):
    """
    :returns: a wrk result as the Markdown cells of L{RESULT_COLUMNS}.
    """
    return (f"{result['rps']:.0f} | {result['mib']:.1f} | {result['p50']:.2f} | {result['p99']:.2f} | "
            f"{result['errors']}")


def in_turn(proxies, round_):
    """
    :returns: C{proxies} in the order of round C{round_}: as given in even
        rounds, reversed in odd ones, so that going first or second (after a
        given neighbour, on a warmer machine) favours none of them.
    """
    return proxies if round_ % 2 == 0 else proxies[::-1]


def median_result(results):
    """
    :returns: of several wrk results of one row, the one with the median
        requests/s (the higher middle one of an even count).
    """
    return sorted(results, key=lambda result: result["rps"])[len(results) // 2]


def ratio_cell(numerator, denominator):
    if numerator is None or not denominator:
        return "n/a"
    return f"{numerator / denominator:.3f}x"


def change_verdict(ratio, tolerance=0.05):
    """
    :returns: C{ratio} (after over before, higher is better) said in words,
        against a C{tolerance} either way.
    """
    if abs(ratio - 1) <= tolerance:
        return f"within {tolerance:.0%}"
    return f"{'faster' if ratio > 1 else 'SLOWER'} by {abs(ratio - 1):.1%}"


def print_peer_ratios(results, chosen, rows, peers):
    """
    Print, for each netproxy and row, its requests/s and MiB/s over each
    peer's in the same run: the ratios the targets are stated in.

    :param results: C{{(name, size, connections): wrk result}}.
    :param chosen: the L{Netproxy}s.
    :param peers: C{(name in results, column title)} pairs.
    """
    present = [(name, title) for name, title in peers if any(key[0] == name for key in results)]
    if not present:
        return
    print("\nRatios against the peers, same run (req/s; MiB/s):\n")
    print("| netproxy | size | conns | " + " | ".join(f"/ {title}" for _, title in present) + " |")
    print("|---|---|---:|" + "---:|" * len(present))
    for netproxy in chosen:
        for size, connections in rows:
            mine = results.get((netproxy.name, size, connections))
            if mine is None:
                continue
            cells = []
            for name, _ in present:
                peer = results.get((name, size, connections))
                cells.append("n/a" if peer is None else
                             f"{ratio_cell(mine['rps'], peer['rps'])}; {ratio_cell(mine['mib'], peer['mib'])}")
            print(f"| {netproxy.name} | {size} | {connections} | " + " | ".join(cells) + " |")


def print_before_after(results, chosen, rows):
    """
    Print, for each baseline and row, L{THIS}'s figures over the
    baseline's. Both are divided by the same peer's figures of this run,
    so each ratio against a peer moves by exactly the factor of its column.

    :param results: C{{(name, size, connections): wrk result}}.
    :param chosen: L{THIS} then the baselines.
    """
    after, baselines = chosen[0], chosen[1:]
    if not baselines:
        return
    print(f"\nAfter / before, same run ({after.name} over each baseline; p99 lower is better):\n")
    print("| before | size | conns | req/s after | req/s before | req/s | MiB/s | p99 | req/s change |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for before in baselines:
        for size, connections in rows:
            new = results.get((after.name, size, connections))
            old = results.get((before.name, size, connections))
            if new is None or old is None:
                continue
            verdict = change_verdict(new["rps"] / old["rps"]) if old["rps"] else "n/a"
            print(f"| {before.name} | {size} | {connections} | {new['rps']:.0f} | {old['rps']:.0f} | "
                  f"{ratio_cell(new['rps'], old['rps'])} | {ratio_cell(new['mib'], old['mib'])} | "
                  f"{ratio_cell(new['p99'], old['p99'])} | {verdict} |")


def cache_status(headers):
    """
    :returns: the parameters of an RFC 9211 C{Cache-Status} value, such as
        C{{"hit", "ttl=3600"}}.
    """
    value = headers.get("cache-status", "")
    return {part.strip() for part in value.split(";")[1:]}


def request_bytes(origin, path, host, only_if_cached=False):
    extra = "Cache-Control: only-if-cached\r\n" if only_if_cached else ""
    return f"GET http://{origin}{path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


async def read_response(reader):
    """
    Read one HTTP/1.1 response.

    :returns: C{(status, headers, body)}, header names in lower case.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        for _ in range(MAX_CHUNKS):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, headers, body


async def exchanges(port, origin, paths, connections=1, host=None, only_if_cached=False, seconds=EXCHANGE_SECONDS):
    """
    GET C{http://ORIGIN/PATH} through the proxy on C{port} for each of
    C{paths}, from C{connections} keep-alive connections.

    :param host: the C{Host} header (default: the origin's).
    :returns: C{{path: (status, headers, body)}}.
    :raises TimeoutError: after C{seconds}.
    """
    todo = iter(paths)
    answers = {}

    async def one_connection():
        reader = writer = None
        try:
            for path in todo:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(request_bytes(origin, path, host or origin, only_if_cached))
                answers[path] = answer = await read_response(reader)
                if answer[1].get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.wait_for(asyncio.gather(*(one_connection() for _ in range(connections))), seconds)
    return answers


async def poll(port, origin, path, started, until_hit):
    """
    Ask the proxy on C{port} for C{path} with C{only-if-cached}, on a new
    connection each time, until it answers (C{until_hit} false) or answers
    with a hit, pausing L{POLL_PAUSE} between tries, for at most
    L{RESTART_SECONDS} after C{started}.

    :returns: C{(first, hit)}: the seconds after C{started} of its first
        answer and of the answer awaited, C{None} when there was none.
    """
    first = None
    for _ in range(MAX_POLLS):
        if time.monotonic() - started > RESTART_SECONDS:
            break
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1)
        except (OSError, TimeoutError):
            await asyncio.sleep(POLL_PAUSE)
            continue
        try:
            writer.write(request_bytes(origin, path, origin, only_if_cached=True))
            _, headers, _ = await asyncio.wait_for(read_response(reader), EXCHANGE_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            await asyncio.sleep(POLL_PAUSE)
            continue
        finally:
            writer.close()
        now = time.monotonic() - started
        first = now if first is None else first
        if not until_hit or "hit" in cache_status(headers):
            return first, now
        await asyncio.sleep(POLL_PAUSE)
    return first, None
