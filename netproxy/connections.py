"""
Server factories that know their open connections and refuse past a limit.

Every listening role bounds how many peers it serves at once, and the set of
open protocols is what a graceful shutdown walks to close idle peers.
"""

import os

from twisted.internet.address import UNIXAddress
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger

DEFAULT_MAX_CONNECTIONS = 1024


class TrackingFactory(ServerFactory):
    """
    A L{ServerFactory} that keeps the set of its open protocols and builds no
    protocol (so the connection is closed at once) when C{max_connections}
    are open already.

    :ivar connections: the open L{TrackedProtocol} instances.
    """

    log = Logger()
    noisy = False
    max_connections = DEFAULT_MAX_CONNECTIONS

    def __init__(self):
        self.connections = set()

    def buildProtocol(self, addr):
        if len(self.connections) >= self.max_connections:
            self.log.warn(
                "refusing connection from {peer}: {limit} connections already open",
                peer=format_address(addr),
                limit=self.max_connections,
            )
            return None
        return super().buildProtocol(addr)


class TrackedProtocol(Protocol):
    """
    A protocol that enters its factory's C{connections} while connected.
    Subclasses that override the connection methods call these too.
    """

    def connectionMade(self):
        self.factory.connections.add(self)

    def connectionLost(self, reason):
        self.factory.connections.discard(self)


def format_address(address):
    """
    Render a peer address for logs and replies: C{127.0.0.1:53211},
    C{[::1]:443}, or the unix path (C{unix socket} for an unnamed peer).

    :param address: an L{IAddress} provider, or L{None}.
    :returns: a L{str}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(address, UNIXAddress):
        # Twisted keeps UNIX paths as bytes; an unnamed peer has no path.
        return os.fsdecode(address.name) if address.name else "unix socket"
    if host is None:
        return str(getattr(address, "name", None) or address)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"
