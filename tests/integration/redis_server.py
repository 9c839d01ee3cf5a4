"""
A real C{redis-server} for the tests of the shared registry: started on a
loopback port of its own, with no persistence, ready once it answers
C{PING}, and stopped at the test's cleanup.  Never the system's Redis.

The tests that need it are skipped where C{redis-server} is not installed
(C{.ci/run} installs it).
"""

import os
import shutil
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SkipTest

from netproxy.resp import RespDecoder, encode_command
from tests.integration.daemon import LOCALHOST, WAIT_TIMEOUT, OutputCollector, bounded, fresh_directory

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                                 else None)
# Ports tried before giving up, when another process takes the one picked.
PORT_ATTEMPTS = 5


def free_port():
    """
    :returns: a loopback TCP port nobody listened on a moment ago.
    """
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


class RedisServer:
    """
    One C{redis-server} process.

    :ivar port: its port on 127.0.0.1.
    :ivar url: C{redis://127.0.0.1:PORT/0}.
    """

    def __init__(self, testcase, port=None):
        self.testcase = testcase
        self.port = port or free_port()
        self.url = f"redis://{LOCALHOST}:{self.port}/0"
        self.directory = fresh_directory(testcase)
        self.output = None
        self.process = None

    async def start(self):
        """
        Start it (again, on the same port, after L{kill}) and wait until it
        answers C{PING}.
        """
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no",
                "--dir", self.directory]
        self.output = OutputCollector(" ".join(argv))
        self.process = reactor.spawnProcess(self.output, REDIS_SERVER, argv, env={}, path=self.directory)
        await self.output.wait_for(r"Ready to accept connections|Address already in use|Could not create server")
        if self.output.find(r"Address already in use|Could not create server"):
            await self.kill()
            raise OSError(f"port {self.port} is taken")
        answer = await self.command(b"PING")
        if answer != "PONG":
            raise AssertionError(f"redis-server answered PING with {answer!r}")

    async def command(self, *args):
        """
        Send one command on a connection of its own and read its reply (for
        the tests' own checks).

        :returns: the reply, as L{RespDecoder} decodes it.
        """
        protocol = await connectProtocol(TCP4ClientEndpoint(reactor, LOCALHOST, self.port), _OneReply())
        protocol.transport.write(encode_command(args))
        try:
            return await bounded(protocol.reply)
        finally:
            protocol.transport.loseConnection()

    async def kill(self):
        """
        Kill it with SIGKILL (its data is gone: it keeps none) and wait until it has exited.
        """
        if self.output is not None and self.output.running:
            self.process.signalProcess("KILL")
            await bounded(self.output.ended, WAIT_TIMEOUT)


class _OneReply(Protocol):
    """
    Reads one reply, decoded by L{RespDecoder}, into C{reply}.
    """

    def __init__(self):
        self.decoder = RespDecoder()
        self.reply = Deferred()

    def dataReceived(self, data):
        for value in self.decoder.feed(data):
            if not self.reply.called:
                self.reply.callback(value)

    def connectionLost(self, reason):
        if not self.reply.called:
            self.reply.errback(reason)


async def start_redis(testcase):
    """
    Start a C{redis-server} for C{testcase}, killed at its cleanup.

    :returns: the L{RedisServer}.
    :raises SkipTest: when C{redis-server} is not installed.
    """
    if REDIS_SERVER is None:
        raise SkipTest("redis-server is not installed (.ci/run installs it)")
    for attempt in range(PORT_ATTEMPTS):
        server = RedisServer(testcase)
        testcase.addCleanup(server.kill)
        try:
            await server.start()
            return server
        except OSError:
            if attempt == PORT_ATTEMPTS - 1:
                raise
