# -*- test-case-name: tests.test_dialing -*-
"""
Outbound connections, shared by the relay and the clients: resolving a
host, connecting, waiting no longer than a timeout, and saying in a few words
why a connection failed.
"""

import ipaddress
from typing import Any

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure

from netproxy.errors import Blocked, ClientError, HTTPError

_FAILURE_REASONS = (
    ((neterror.ConnectionRefusedError,), "connection refused"),
    ((neterror.TimeoutError, neterror.TCPTimedOutError, CancelledError, DeferredTimeout), "timed out"),
    ((neterror.DNSLookupError,), "host not found"),
    ((neterror.NoRouteError,), "no route to host"),
)


async def resolve(reactor: Any, host: str) -> str:
    """
    :returns: C{host} if it is an IP address, else the IPv4 address it resolves to.
    :raises ClientError: when the name cannot be resolved.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return await reactor.resolve(host)
    except Exception as error:
        raise ClientError(f"could not resolve {host}: {error}")


async def within(deferred: "Deferred[Any]", timeout: float, clock: Any, message: str) -> Any:
    """
    Wait for C{deferred}, cancelling it after C{timeout} seconds.

    :returns: its result.
    :raises ClientError: with C{message} when the time runs out.
    """
    try:
        return await deferred.addTimeout(timeout, clock)
    except DeferredTimeout:
        raise ClientError(message)


async def connect(endpoint: IStreamClientEndpoint, factory: IProtocolFactory, destination: str) -> Any:
    """
    Connect C{endpoint} with C{factory}.

    :returns: the connected protocol.
    :raises ClientError: naming C{destination} when the connection fails.
    """
    try:
        return await endpoint.connect(factory)
    except Exception:
        raise ClientError(f"could not connect to {destination}: {connect_failure_reason(Failure())}")


def connect_failure_reason(failure: Failure) -> str:
    """
    Say in a few words why a connection attempt failed.

    :param failure: the L{Failure} of the attempt.
    :returns: a short L{str} such as C{connection refused}.
    """
    for kinds, text in _FAILURE_REASONS:
        if failure.check(*kinds):
            return text
    return failure.getErrorMessage()


def connect_error(failure: Failure, authority: str) -> HTTPError:
    """
    :param failure: the L{Failure} of a connection attempt to C{authority}
        (C{host:port}) made with L{connect_checked}.
    :returns: the L{HTTPError} a proxy answers it with: 403 for a blocked
        address, 504 for a timeout, 502 otherwise.
    """
    if failure.check(Blocked):
        return HTTPError(403, f"destination {authority} is blocked: it {failure.getErrorMessage()}")
    reason = connect_failure_reason(failure)
    return HTTPError(504 if reason == "timed out" else 502, f"could not connect to {authority}: {reason}")


def endpoint_for(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    A client endpoint for C{host}: a plain TCP endpoint for an IP address,
    which needs no name resolution (L{HostnameEndpoint} would still send it
    through the resolver's thread pool), else a L{HostnameEndpoint}.

    :returns: an L{IStreamClientEndpoint}.
    """
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    endpoint_type = TCP6ClientEndpoint if version == 6 else TCP4ClientEndpoint
    return endpoint_type(reactor, host, port, timeout=timeout)


def connect_checked(reactor: Any, rules: Any, host: str, port: int, factory: IProtocolFactory,
                    timeout: float) -> "Deferred[Any]":
    """
    Connect C{factory} to C{host:port}, where a host name is resolved first
    and its address checked against C{rules} too (the caller has checked
    the name itself), so that no name leads to an address the rules forbid.
    The connection goes to the address that was checked, not to the name,
    which could resolve differently a second time.

    :param rules: anything with C{match(host, port)}.
    :returns: a L{Deferred} firing with the connected protocol, or failing
        with L{Blocked} when the address is forbidden.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        resolving = reactor.resolve(host, (timeout,))
        return resolving.addCallback(_connect_address, reactor, rules, port, factory, timeout)
    return endpoint_for(reactor, host, port, timeout).connect(factory)


def _connect_address(address: str, reactor: Any, rules: Any, port: int, factory: IProtocolFactory,
                     timeout: float) -> "Deferred[Any]":
    rule = rules.match(address, port)
    if rule is not None:
        raise Blocked(f"resolves to {address}, blocked by rule {rule}")
    return endpoint_for(reactor, address, port, timeout).connect(factory)
