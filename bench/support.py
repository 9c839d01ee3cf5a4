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
    :param cpu: a CPU number, or C{None} for every CPU.
    :returns: C{argv} run on CPU C{cpu} only, when taskset and a second CPU exist.
    """
    if cpu is not None and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
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
        self._help = None

    def twistd(self, *args, logfile="-"):
        """
        :param logfile: where twistd writes its log (default: standard output,
            which the benchmarks discard; never /dev/null, which twistd,
            run as root, renames away once 1 MB has been written to it).
        :returns: the command line of C{twistd netproxy ARGS...} in the
            foreground.
        """
        # Inserted before Twisted looks for plugins, so twisted/plugins/ of
        # the tree is searched too and its netproxy.tap is the one imported.
        first = f"sys.path.insert(0, {str(self.tree)!r}); " if self.tree else ""
        code = f"import sys; {first}from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
        return [self.python, "-c", code, "--nodaemon", "--pidfile=", f"--logfile={logfile}", "netproxy", *args]

    def http(self, port, *args, logfile="-"):
        """
        :param logfile: where twistd writes its log (default: standard output,
            which the benchmarks discard; never /dev/null, which twistd,
            run as root, renames away once 1 MB has been written to it).
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
            and do not know the option.
        """
        return ["--allow-local"] if self.knows("--allow-local") else []

    def knows(self, option):
        """
        :returns: whether this tree's http role has C{option}, such as
            C{--workers}, which a C{--baseline} from before it lacks.  Its
            C{--help} is asked once.
        """
        if self._help is None:
            with tempfile.TemporaryDirectory() as empty:
                self._help = subprocess.run(self.twistd("http", "--help"), cwd=empty, capture_output=True, text=True,
                                            timeout=60).stdout
        return option in self._help

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


def squid(work, port, *directives, workers=1):
    """
    Write a Squid configuration for C{workers} workers on 127.0.0.1:C{port},
    with no access log, that stops at once on SIGTERM.

    :param directives: further lines of C{squid.conf}, such as C{"cache deny all"}.
    :param workers: 1 for one process (C{squid -N}); more for Squid's SMP
        mode, a master process in the foreground with a coordinator and the
        workers as its children, under a service name of this process's
        own, so that its shared memory segments and IPC sockets are apart
        from any other Squid's on the machine.
    :returns: the command line running Squid in the foreground with it.
    """
    conf = work / "squid.conf"
    conf.write_text("".join(line + "\n" for line in [
        f"http_port {HOST}:{port}", *directives, "access_log none", "cache_log /dev/null",
        f"pid_filename {work}/squid.pid", "http_access allow all", f"workers {workers}", "max_filedescriptors 8192",
        f"coredump_dir {work}", "shutdown_lifetime 0 seconds",
        # No ICMP helper, which would outlive Squid for half a minute.
        "pinger_enable off"]))
    if workers == 1:
        return ["squid", "-N", "-f", str(conf)]
    return ["squid", "--foreground", "-n", f"netproxybench{os.getpid()}", "-f", str(conf)]


def proxypy(port, one_worker=True):
    """
    :param one_worker: one acceptor and one worker, else proxy.py's
        defaults: as many of each as there are CPUs.
    :returns: the command line of proxy.py on 127.0.0.1:C{port}.
    """
    workers = ["--num-workers", "1", "--num-acceptors", "1"] if one_worker else []
    return [str(PROXYPY_VENV / "bin" / "proxy"), "--hostname", HOST, "--port", str(port), "--threadless",
            *workers, "--log-level", "WARNING", "--backlog", "4096"]


#: The worker counts each netproxy runs with in the rows of several processes.
WORKER_COUNTS = (1, 2)
#: Squid's C{workers} in those rows.
SQUID_WORKERS = 2
#: The resident memory each worker, and the main process with it, may take.
MIB_PER_WORKER = 64


def add_workers_option(parser):
    """
    Add C{--workers-rows} to C{parser}: the rows of several processes.
    """
    parser.add_argument("--workers-rows", action="store_true",
                        help=f"run the rows of several processes instead, nothing pinned (every process, wrk and "
                             f"nginx too, may use every CPU): netproxy with --workers "
                             f"{' and '.join(map(str, WORKER_COUNTS))}, Squid with workers {SQUID_WORKERS} and "
                             f"proxy.py at its defaults (a worker per CPU), as --only picks them; and their targets")


def several_process_rows(only, chosen_netproxies):
    """
    :param only: the names C{--only} gives: C{netproxy}, C{squid},
        C{proxy.py} (others are left out).
    :param chosen_netproxies: the L{Netproxy}s; the baselines' rows come
        right after netproxy's.
    :returns: C{[(row name, kind, netproxy or None, workers)]}, C{kind}
        being C{netproxy}, C{squid} or C{proxy.py}.
    :raises SystemExit: when a netproxy has no C{--workers}.
    """
    rows = []
    for kind in only:
        if kind == "netproxy":
            for netproxy in chosen_netproxies:
                if not netproxy.knows("--workers"):
                    raise SystemExit(f"--workers-rows: {netproxy.name} has no --workers option")
                rows += [(f"{netproxy.name} --workers {count}", kind, netproxy, count) for count in WORKER_COUNTS]
        elif kind == "squid":
            rows.append((f"squid workers {SQUID_WORKERS}", kind, None, SQUID_WORKERS))
        elif kind == "proxy.py":
            rows.append(("proxy.py defaults", kind, None, os.cpu_count() or 1))
    return rows


def placement(workers_rows):
    """
    :returns: C{(CPU of the proxy, CPU of nginx, wrk and the script)}:
        C{(0, 1)}, or C{(None, None)} (every CPU) for the rows of several
        processes.
    """
    return (None, None) if workers_rows else (0, 1)


def describe_placement(workers_rows):
    return "nothing pinned" if workers_rows else "proxy on CPU 0"


def every_worker_answers(port, origin, path, pid, accept, host=None):
    """
    Ask the proxy C{pid} (a main process and its workers, or one process)
    on C{port} for C{http://ORIGIN/PATH} until every worker has answered.

    :param accept: called with C{(status, headers, body)}, returns whether
        the answer is the one wanted.
    :returns: C{{worker pid: (status, headers, body)}}.
    :raises RuntimeError: when a worker gives an answer not accepted, or
        some worker gives none.
    """
    workers = children(pid) or [pid]
    answers = asyncio.run(answers_by_process(port, origin, path, workers, host))
    for worker, (status, headers, body) in answers.items():
        if not accept((status, headers, body)):
            raise RuntimeError(f"worker {worker} of {pid}: {path} was not as expected: {status} {headers}")
    if set(answers) != set(workers):
        raise RuntimeError(f"{pid}: no answer from workers {sorted(set(workers) - set(answers))} of {workers}")
    return answers


def spread_sampler(port, pid):
    """
    :returns: a function giving how many client connections each of the
        proxy C{pid}'s processes holds, most first, for L{run_wrk}'s
        C{midway}.
    """
    return lambda: sorted(client_connections(port, descendants(pid) or [pid]).values(), reverse=True)


def print_spread(runs, chosen, scenarios):
    """
    Print how each proxy's processes shared wrk's connections, halfway
    through each row's runs.

    :param runs: C{{(name, size, connections): [(wrk result, ...)]}}.
    """
    print("\nClient connections held by each process under the one started (or by that one alone), halfway "
          "through wrk, most first:\n")
    for proxy in chosen:
        for name, connections in scenarios:
            spreads = [" + ".join(map(str, measured[0]["midway"] or [])) or "none"
                       for measured in runs.get((proxy, name, connections), [])]
            if spreads:
                print(f"- {proxy}, {name} x {connections}: {'; '.join(spreads)}")


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


def start_nginx(work, servers, cpu=1):
    """
    Start nginx, one worker on CPU C{cpu}, with keep-alive connections that
    last and no access log unless a server asks for one.

    :param work: a directory for its configuration and pid file.
    :param servers: the C{server} blocks of its configuration.
    :param cpu: a CPU number, or C{None} for every CPU.
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
    return subprocess.Popen(pinned(cpu, ["nginx", "-c", str(conf), "-p", str(work)]), preexec_fn=raise_file_limit)


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


def spawn(argv, work, cpu=0):
    """
    Start the process under test, C{argv}, pinned to CPU C{cpu}, its output discarded.

    :param work: its working directory.
    :param cpu: a CPU number, or C{None} for every CPU.
    :returns: the L{subprocess.Popen}.
    """
    return subprocess.Popen(pinned(cpu, argv), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=raise_file_limit)


@contextmanager
def running(command, work, cpu=0):
    """
    Start a proxy pinned to CPU C{cpu} on a free port, and stop it afterwards.

    :param command: called with the port, returns the proxy's command line.
    :param work: its working directory.
    :param cpu: a CPU number, or C{None} for every CPU.
    :returns: a context manager giving C{(port, pid)}.
    """
    port = free_port()
    process = spawn(command(port), work, cpu)
    try:
        wait_listening(port)
        yield port, process.pid
    finally:
        stop(process)


def peak_rss_mib(pid):
    """
    :returns: the peak resident memory of C{pid} and its descendants, in
        MiB: the sum of each one's own peak, so at least the peak of them
        all together (a main process and its workers, Squid's master and
        kids, proxy.py's acceptors and workers).
    """
    total = 0
    for candidate in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def pss_mib(pid):
    """
    :returns: the proportional set size of C{pid} and its descendants now,
        in MiB: the memory they take together, each page shared by several
        of them (the interpreter's, the libraries') counted once.
    """
    total = 0
    for candidate in [pid, *descendants(pid)]:
        try:
            match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{candidate}/smaps_rollup").read_text(), re.MULTILINE)
        except OSError:
            continue
        total += int(match.group(1)) if match else 0
    return total / 1024


def children(pid):
    """
    :returns: the processes C{pid}'s main thread started, such as a main
        process's workers.
    """
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid, depth=4):
    """
    :returns: C{pid}'s children, theirs, and so on, C{depth} generations down.
    """
    found = []
    for child in children(pid):
        found += [child, *(descendants(child, depth - 1) if depth > 1 else [])]
    return found


def hex_address(address):
    """
    :returns: C{(host, port)} as C{/proc/net/tcp} writes it.
    """
    host, port = address
    return f"{int.from_bytes(socket.inet_aton(host), 'little'):08X}:{port:04X}"


def tcp_inodes(keep):
    """
    :param keep: called with the local and remote addresses and the state
        of each IPv4 TCP socket, as C{/proc/net/tcp} writes them.
    :returns: the inodes of the sockets it keeps.
    """
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return {fields[9] for fields in rows if keep(fields[1], fields[2], fields[3])}


def sockets_held(pid, inodes):
    """
    :returns: how many of the sockets C{inodes} C{pid} has open.
    """
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    held = 0
    for descriptor in descriptors:
        try:
            held += os.readlink(f"/proc/{pid}/fd/{descriptor}") in wanted
        except OSError:
            pass  # closed since it was listed
    return held


def socket_owner(local, remote, pids):
    """
    :param local: the C{(host, port)} of the proxy's end of a TCP connection.
    :param remote: the C{(host, port)} of the client's end.
    :param pids: the processes that may hold it.
    :returns: which of C{pids} holds that connection's socket (the worker
        that accepted it), or C{None}.
    """
    wanted = (hex_address(local), hex_address(remote))
    inodes = tcp_inodes(lambda here, there, _: (here, there) == wanted)
    return next((pid for pid in pids if sockets_held(pid, inodes)), None)


def client_connections(port, pids):
    """
    :returns: C{{pid: how many established connections to 127.0.0.1:PORT it
        holds}}: how the kernel and the workers' accepts shared the clients.
    """
    # 01 is TCP_ESTABLISHED.
    inodes = tcp_inodes(lambda here, _, state: here == hex_address((HOST, port)) and state == "01")
    return {pid: sockets_held(pid, inodes) for pid in pids}


def rss_mib(pid):
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024


def open_fds(pid):
    """
    :returns: how many file descriptors C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_wrk(target_port, origin, name, connections, seconds, work, through_proxy, cpu=1, midway=None):
    """
    Run wrk (one thread, on CPU C{cpu}, or on every CPU for C{None}) for
    C{seconds} at C{connections} connections, requesting
    C{http://ORIGIN/NAME} from the proxy on C{target_port}, or C{/NAME} from
    the origin itself.

    :param midway: called once halfway through, when given; what it returns
        is the figures' C{"midway"}.
    :returns: L{parse_wrk}'s figures.
    """
    script = work / f"{name}.lua"
    script.write_text(LUA.format(origin=origin, name=name))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if through_proxy:
        argv += ["-s", str(script)]
    url = f"http://{HOST}:{target_port}/" + ("" if through_proxy else name)
    with subprocess.Popen(pinned(cpu, argv + [url]), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          preexec_fn=raise_file_limit) as wrk:
        try:
            seen = None
            if midway is not None:
                time.sleep(seconds / 2)
                seen = midway()
            output, _ = wrk.communicate(timeout=seconds + 60)
        finally:
            wrk.kill()
    return {**parse_wrk(output), "midway": seen}


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


def ratio_line(what, numerator, denominator, target):
    """
    :returns: C{numerator / denominator} against its C{target} (at least),
        as a line of text, or C{None} when a figure is missing.
    """
    if numerator is None or not denominator:
        return None
    ratio = numerator / denominator
    verdict = "met" if ratio >= target else "MISSED"
    return f"- {what}: {numerator:.1f} / {denominator:.1f} = {ratio:.2f}x (target >= {target:.2f}x: {verdict})"


def limit_line(what, value, limit):
    """
    :returns: C{value} against its C{limit} (at most), as a line of text,
        or C{None} when the value is missing.
    """
    if value is None:
        return None
    return f"- {what}: {value:.1f} (target <= {limit:.1f}: {'met' if value <= limit else 'MISSED'})"


def print_targets(title, lines):
    """
    Print the target C{lines} that could be worked out, under C{title}.
    """
    lines = [line for line in lines if line]
    if lines:
        print(f"\n{title}:\n")
        print("\n".join(lines))


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


async def answers_by_process(port, origin, path, pids, host=None, tries=100):
    """
    GET C{http://ORIGIN/PATH} through the proxy on C{port}, a new connection
    each time, until each of C{pids} (a main process's workers) has answered
    at least once, or C{tries} times.  Which worker accepted each connection
    the kernel decides; it is read from C{/proc} while the connection is
    still open.

    :param host: the C{Host} header (default: the origin's).
    :returns: C{{pid: (status, headers, body)}}, each worker's last answer.
    :raises TimeoutError: when an exchange takes over L{EXCHANGE_SECONDS}.
    """
    answers = {}
    for _ in range(tries):
        if set(pids) <= set(answers):
            break
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), EXCHANGE_SECONDS)
        try:
            writer.write(request_bytes(origin, path, host or origin))
            answer = await asyncio.wait_for(read_response(reader), EXCHANGE_SECONDS)
            owner = socket_owner(writer.get_extra_info("peername")[:2], writer.get_extra_info("sockname")[:2], pids)
        finally:
            writer.close()
        if owner is not None:
            answers[owner] = answer
    return answers
