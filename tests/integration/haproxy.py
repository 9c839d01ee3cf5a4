"""
A real HAProxy for the end-to-end tests, configured from the file the
project ships (C{contrib/haproxy/netproxy-fleet.cfg}) with the test's own
addresses put in: its frontend listens on a socket the test opened (so no
other process can take the port between choosing it and listening), and
its servers are the test's nodes.
"""

import os
import re
import shutil
import signal
import socket

from twisted.internet import reactor
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.trial.unittest import SkipTest

from tests.integration.daemon import (
    LOCALHOST,
    STOP_TIMEOUT,
    OutputCollector,
    bounded,
    fresh_directory,
)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "haproxy", "netproxy-fleet.cfg")

# Where Debian installs it (.ci/run installs the package when missing).
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

_BIND = re.compile(r"^(\s*)bind 127\.0\.0\.1:3128$", re.MULTILINE)
_SERVERS = re.compile(r"^(\s*)server node1 .*\n(\s*server node\d+ .*\n)*", re.MULTILINE)
_CHECKS = re.compile(r"check inter 2s fall 2 rise 2")


def fleet_config(node_ports, frontend="fd@3", checks="check inter 200ms fall 1 rise 1"):
    """
    The shipped configuration with the test's addresses.

    :param node_ports: the nodes' ports on 127.0.0.1, one server each
        (C{node1}, C{node2} ...).
    :param frontend: what the frontend binds.
    :param checks: the servers' health check settings, quicker than the
        shipped ones so a killed node is marked down at once.
    :returns: the configuration's text.
    """
    with open(CONFIG) as shipped:
        text = shipped.read()
    text, binds = _BIND.subn(rf"\1bind {frontend}", text)
    servers = "".join(f"    server node{index} {LOCALHOST}:{port} id {index}\n"
                      for index, port in enumerate(node_ports, 1))
    text, lists = _SERVERS.subn(servers, text)
    text, checked = _CHECKS.subn(checks, text)
    if (binds, lists, checked) != (1, 1, 1):
        raise AssertionError(f"{CONFIG} no longer has the lines the tests replace")
    return text


class HAProxy:
    """
    A running C{haproxy -f CONFIG -db}; made by L{start_haproxy}.

    :ivar port: the port its frontend listens on, at 127.0.0.1.
    :ivar output: its L{OutputCollector} (server state changes are logged
        there: C{Server caches/node2 is DOWN}).
    """

    def __init__(self, port, output, process):
        self.port = port
        self.output = output
        self.process = process

    def wait_for(self, pattern, since=0):
        """
        See L{OutputCollector.wait_for}.
        """
        return self.output.wait_for(pattern, since)

    async def stop(self):
        """
        Stop it (SIGTERM, then SIGKILL if it lingers) and wait for its exit.
        """
        self.output.cancel_waiters()
        if not self.output.running:
            return
        self.process.signalProcess(signal.SIGTERM)
        try:
            await bounded(self.output.ended, STOP_TIMEOUT)
        except DeferredTimeout:
            if self.output.running:
                self.process.signalProcess("KILL")
            await bounded(self.output.ended, STOP_TIMEOUT)


def start_haproxy(testcase, node_ports):
    """
    Start HAProxy in front of nodes listening on C{node_ports}, stopped at
    the test's cleanup.  Its frontend socket is opened here and handed
    over as descriptor 3, so it accepts connections from the start.

    :returns: the L{HAProxy}.
    :raises SkipTest: when HAProxy is not installed.
    """
    if not os.access(HAPROXY, os.X_OK):
        raise SkipTest("haproxy is not installed (.ci/run installs Debian's package)")
    directory = fresh_directory(testcase)
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w") as config:
        config.write(fleet_config(node_ports))
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    testcase.addCleanup(listening.close)
    listening.bind((LOCALHOST, 0))
    listening.listen(128)
    argv = [HAPROXY, "-f", path, "-db"]
    output = OutputCollector(" ".join(argv))
    process = reactor.spawnProcess(output, HAPROXY, argv, env={}, path=directory,
                                   childFDs={0: "w", 1: "r", 2: "r", 3: listening.fileno()})
    haproxy = HAProxy(listening.getsockname()[1], output, process)
    testcase.addCleanup(haproxy.stop)
    return haproxy
