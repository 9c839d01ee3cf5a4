"""
What the benchmarks share: free loopback ports, CPU pinning, waiting for a
listener, and the command line of a twistd netproxy role.
"""

import os
import shutil
import socket
import sys
import time

HOST = "127.0.0.1"


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


def twistd(*args):
    """
    :returns: the command line of C{twistd netproxy ARGS...} in the foreground,
        with the interpreter running the benchmark and its log discarded.
    """
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "--nodaemon", "--pidfile=", "--logfile=/dev/null", "netproxy", *args]


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
