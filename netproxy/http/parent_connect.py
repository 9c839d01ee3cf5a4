# -*- test-case-name: tests.http.test_parent_connect -*-
"""
Connecting to the parent proxies (L{netproxy.http.parents}): to the first
candidate that accepts, marking down each that does not; and through a
SOCKS5 parent, the SOCKS handshake (L{netproxy.socks_client}) that opens a
tunnel to the origin, its failures answered as the HTTP proxy answers an
origin's.

A SOCKS5 parent is marked down only for its own failures: refusing the
connection, breaking the protocol, closing or stalling before its reply
to the greeting.  A reply code saying the destination could not be
reached (refused, unreachable, not allowed, TTL expired) is the parent
answering: the client gets a 502 (a 504 for TTL expired) naming the
parent and the code, and the parent stays up.
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.python.failure import Failure

from netproxy.dialing import connect_failure_reason, endpoint_for
from netproxy.errors import HTTPError
from netproxy.http.parents import Parent, Parents
from netproxy.socks_client import SocksClient, SocksFailure, socks_factory
from netproxy.socks_codes import TTL_EXPIRED


class ParentSocks(SocksClient):
    """
    The SOCKS handshake with a parent, which it knows, to report to it.

    :param parent: the L{Parent}; the other parameters are
        L{SocksClient}'s.
    """

    def __init__(self, parent: Parent, *args: Any) -> None:
        super().__init__(*args)
        self.parent = parent


def socks_error(parents: Parents, parent: Parent, failure: SocksFailure, destination: str) -> HTTPError:
    """
    The SOCKS5 C{parent} did not open the tunnel to C{destination}
    (C{host:port}): mark it down if the failure is its own, or up again if
    it answered.

    :returns: the error to answer: 504 for a timeout, 502 otherwise.
    """
    if failure.server_fault:
        parents.failed(parent, str(failure))
    else:
        parents.answered(parent)
    status = 504 if failure.reply == TTL_EXPIRED else 502
    return HTTPError(status, f"parent proxy {parent.name} could not open a tunnel to {destination}: {failure}")


def through_socks(parents: Parents, destination: str) -> Callable[[Any], Any]:
    """
    :returns: the callback for what L{connect_parent} connected: the
        protocol itself for an HTTP parent; for a SOCKS5 parent (a
        L{ParentSocks}), a L{Deferred} of the tunnel's protocol once the
        parent opened it, failing with an L{HTTPError} otherwise.
    """
    def opened(protocol: Any) -> Any:
        if not isinstance(protocol, ParentSocks):
            return protocol
        parent = protocol.parent

        def answered(inner: IProtocol) -> IProtocol:
            parents.answered(parent)
            return inner

        def failed(failure: Failure) -> Failure:
            if failure.check(SocksFailure):
                return Failure(socks_error(parents, parent, failure.value, destination))
            return failure

        return protocol.ready.addCallbacks(answered, failed)
    return opened


def socks_protocols(parent: Parent, origin: tuple[str, int], inner: IProtocolFactory, clock: Any,
                    timeout: float) -> IProtocolFactory:
    """
    :returns: the factory of the handshake with the SOCKS5 C{parent} for a
        tunnel to C{origin}, which hands the tunnel to C{inner}'s protocol.
    """
    return socks_factory(origin[0], origin[1], parent.login, inner, clock, timeout, partial(ParentSocks, parent))


class _Failover:
    """
    Connects to the first of C{candidates} that accepts, marking down each
    that does not; see L{connect_parent}.
    """

    def __init__(self, parents: Parents, candidates: Sequence[Parent], reactor: Any, timeout: float,
                 make_factory: Callable[[Parent], IProtocolFactory]) -> None:
        self._parents = parents
        self._rest = list(candidates)
        self._reactor = reactor
        self._timeout = timeout
        self._make_factory = make_factory
        self._reasons: list[str] = []
        self._attempt: "Deferred[Any] | None" = None
        self._cancelled = False
        self.result: "Deferred[Any]" = Deferred(self._cancel)

    def next(self) -> None:
        if not self._rest:
            self.result.errback(self._error())
            return
        parent = self._rest.pop(0)
        attempt = self._attempt = endpoint_for(self._reactor, parent.host, parent.port,
                                               self._timeout).connect(self._make_factory(parent))
        attempt.addCallbacks(self._connected, self._failed, callbackArgs=(parent,), errbackArgs=(parent,))

    def _connected(self, protocol: Any, parent: Parent) -> None:
        # Up again once it answers, not once it accepts: one that accepts
        # and then resets every connection keeps doubling its wait.
        self._attempt = None
        self.result.callback(protocol)

    def _failed(self, failure: Failure, parent: Parent) -> None:
        self._attempt = None
        if self._cancelled:
            return
        reason = "timed out" if failure.check(CancelledError) else connect_failure_reason(failure)
        self._parents.failed(parent, reason)
        self._reasons.append(f"{parent.name}: {reason}")
        self.next()

    def _error(self) -> HTTPError:
        timed_out = all(reason.endswith(": timed out") for reason in self._reasons)
        if len(self._reasons) == 1:
            message = f"could not connect to parent proxy {self._reasons[0]}"
        else:
            message = "could not connect to any parent proxy: " + "; ".join(self._reasons)
        return HTTPError(504 if timed_out else 502, message)

    def _cancel(self, result: "Deferred[Any]") -> None:
        self._cancelled = True
        if self._attempt is not None:
            self._attempt.cancel()


def connect_parent(parents: Parents, candidates: Sequence[Parent], reactor: Any, timeout: float,
                   make_factory: Callable[[Parent], IProtocolFactory]) -> "Deferred[Any]":
    """
    Connect to the first of C{candidates} that accepts a connection within
    C{timeout} seconds, with the factory C{make_factory} returns for it.

    :returns: a L{Deferred} firing with the connected protocol, or failing
        with an L{HTTPError} (502, or 504 when every attempt timed out)
        naming each parent tried and why it failed.
    """
    failover = _Failover(parents, candidates, reactor, timeout, make_factory)
    failover.next()
    return failover.result
