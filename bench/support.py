"""
What the benchmarks share: free loopback ports, CPU pinning, waiting for a
listener, the command lines of the processes they start (twistd netproxy,
nginx, Squid, proxy.py), running wrk and reading its report, and the peak
RSS of a process.
"""

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


def twistd(*args):
    """
    :returns: the command line of C{twistd netproxy ARGS...} in the foreground,
        with the interpreter running the benchmark and its log discarded.
    """
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "--nodaemon", "--pidfile=", "--logfile=/dev/null", "netproxy", *args]


def netproxy_http(port, *args):
    """
    :returns: the command line of C{twistd netproxy http} listening on
        127.0.0.1:C{port} with room for a thousand connections and more.
    """
    return twistd("http", "--listen", f"tcp:{port}:interface={HOST}:backlog=4096", "--max-connections", "4096", *args)


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
