# -*- test-case-name: tests.http.test_routes,tests.http.test_forwarding -*-
"""
Where a forwarded request goes: straight to its origin, checked and
resolved by L{netproxy.dialing.connect_checked}, or through one of the
parent proxies (L{netproxy.http.parents}), with failover between them.

Through an HTTP parent, a connection carries requests for any origin in
absolute form.  Through a SOCKS5 parent, each connection is a tunnel to one
origin, which takes its requests as the origin itself would (origin-form,
with C{Host}): such connections are pooled per parent and origin, and the
parent is not told of them once open (an origin that misbehaves in the
tunnel is the origin's fault, not the parent's).
"""

from functools import partial
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory

from netproxy.dialing import connect_checked
from netproxy.errors import HTTPError
from netproxy.http.message import Target
from netproxy.http.parent_connect import connect_parent, socks_protocols, through_socks
from netproxy.http.parents import Parent, ParentRefused, refusal, url_key
from netproxy.http.upstream import UpstreamConnection


class Route:
    """
    The way to the origin of one request.

    :param factory: the L{netproxy.http.proxy.ProxyFactory}.
    :param target: the request's L{Target}.
    :param origin: its C{(host, port)}.
    :ivar parents: the parents to try in turn, or L{None} to go direct.
    :ivar key: the pool key of the connection it takes: the origin's, or
        the first parent's (L{Parent.pool_key}).
    :raises HTTPError: when the destination is refused (through a parent,
        it is checked as written: see L{refusal}).
    """

    def __init__(self, factory: Any, target: Target, origin: tuple[str, int]) -> None:
        self.factory = factory
        self.origin = origin
        self.parents: list[Parent] | None = None
        self.key = origin
        parents = factory.parents
        if parents is not None and not parents.goes_direct(*origin):
            error = refusal(factory.rules, factory.local, target)
            if error is not None:
                raise error
            self.parents = parents.candidates(url_key(target))
            self.key = self.parents[0].pool_key(origin)

    def connect(self) -> "Deferred[UpstreamConnection]":
        """
        Open a new upstream connection.

        :returns: a L{Deferred} firing with the L{UpstreamConnection}, or
            failing as L{connect_checked} does, or with an L{HTTPError}
            naming the parents tried.
        """
        factory = self.factory
        if self.parents is None:
            host, port = self.origin
            return connect_checked(factory.reactor, factory.rules, host, port, self._protocols(self.origin),
                                   factory.connect_timeout, factory.local)
        host, port = self.origin
        destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return connect_parent(factory.parents, self.parents, factory.reactor, factory.connect_timeout,
                              self._parent_protocols).addCallback(through_socks(factory.parents, destination))

    def _parent_protocols(self, parent: Parent) -> IProtocolFactory:
        if not parent.socks:
            return self._protocols(parent.key, parent)
        # A tunnel to the origin: its connection speaks to the origin, as a
        # direct one does.
        factory = self.factory
        return socks_protocols(parent, self.origin, self._protocols(parent.pool_key(self.origin)),
                               factory.reactor, factory.timeout)

    def _protocols(self, key: tuple[str, int], parent: Parent | None = None) -> IProtocolFactory:
        factory = self.factory
        protocols = Factory.forProtocol(partial(UpstreamConnection, key, factory.metrics.upstream_connections,
                                                factory.idle_upstream_lost, parent))
        protocols.noisy = False
        return protocols


def parent_failed(factory: Any, parent: Parent, error: HTTPError, stale: bool) -> HTTPError:
    """
    The connection to C{parent} broke before its answer (with C{error}):
    unless it came from the pool and may just have been closed by the
    parent as it was reused (C{stale}), or the parent answered in a way the
    proxy does not relay (L{ParentRefused}), the parent is down.

    :param factory: the L{netproxy.http.proxy.ProxyFactory}.
    :returns: the error to answer, naming the parent.
    """
    if isinstance(error, ParentRefused):
        return error
    if not stale:
        factory.parents.failed(parent, str(error))
    return HTTPError(error.status, f"parent proxy {parent.name}: {error}")
