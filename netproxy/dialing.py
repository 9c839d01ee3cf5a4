# -*- test-case-name: tests.test_dialing -*-
"""
Outbound connections, shared by the relay and the clients: resolving a
host, connecting, waiting no longer than a timeout, and saying in a few words
why a connection failed.

Destinations named by clients (the relay's, the HTTP proxy's) go through
L{connect_checked}: a name is looked up in both families, every address is
checked against the access rules and the local-destination refusal, and the
connection races the addresses that passed (L{netproxy.resolving}).
"""

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure

from netproxy.acl import host_address
from netproxy.errors import Blocked, ClientError, HTTPError, LocalDestination
from netproxy.resolving import Address, LookupTimedOut, connect_addresses, resolve_addresses
from netproxy.this_host import LocalDestinations, destination_aliases, is_this_host

_FAILURE_REASONS = (
    ((neterror.ConnectionRefusedError,), "connection refused"),
    ((neterror.TimeoutError, neterror.TCPTimedOutError, CancelledError, DeferredTimeout), "timed out"),
    ((LookupTimedOut,), "name lookup timed out"),
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
        address: str = await reactor.resolve(host)
    except Exception as error:
        raise ClientError(f"could not resolve {host}: {error}")
    return address


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
        or local address, 504 for a timeout, 502 otherwise.
    """
    if failure.check(LocalDestination):
        return HTTPError(403, failure.value.answer(authority))
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
                    timeout: float, local: LocalDestinations | None = None) -> "Deferred[Any]":
    """
    Connect C{factory} to C{host:port} by an address that has passed
    C{rules} and, when given, C{local}.

    The addresses are what the connection would really reach, however the
    client spelled them: an IP literal or a numeric IPv4 form is read as the
    resolver reads it (L{netproxy.acl.host_address}); a name is looked up in
    both families (L{netproxy.resolving.resolve_addresses}) and each of its addresses checked
    on its own.  Rules see each address in every form
    (L{netproxy.this_host.destination_aliases}): a rule matching loopback
    matches 0.0.0.0 too.  The connection goes to the addresses that were
    checked, never to the name, which could resolve differently a second
    time; a name's refused addresses are left out, and the others raced
    the Happy Eyeballs way (L{netproxy.resolving.connect_addresses}).  (Callers check the name
    itself, for name rules.)

    :param rules: anything with C{match(host, port)}.
    :param local: the L{LocalDestinations} refused, or L{None} to allow
        every local destination.
    :returns: a L{Deferred} firing with the connected protocol, or failing
        with L{Blocked} when a rule forbids the address (every address of a
        name), or with L{LocalDestination} when it is local; cancelling it
        stops the lookup or the connection attempts.
    """
    address = host_address(host)
    if address is None:
        resolving = resolve_addresses(reactor, host, timeout)
        return resolving.addCallback(_connect_resolved, reactor, rules, local, port, factory, timeout)
    return maybeDeferred(_connect_address, address, reactor, rules, local, port, factory, timeout)


def check_destination(rules: Any, local: LocalDestinations | None, address: IPv4Address | IPv6Address,
                      port: int, resolved: bool = False) -> None:
    """
    Check the address a connection would reach.

    :param rules: anything with C{match(host, port)}, tried with every alias
        of C{address}.
    :param local: the L{LocalDestinations} refused, or L{None}.
    :param resolved: whether C{address} comes from looking up a name (for
        the error's text).
    :raises Blocked: when a rule matches.
    :raises LocalDestination: when C{address} is local.
    """
    aliases = destination_aliases(address)
    for alias in aliases:
        rule = rules.match(str(alias), port)
        if rule is not None:
            raise Blocked.by_rule(str(aliases[0]), resolved, any(map(is_this_host, aliases)), rule)
    if local is not None:
        kind = local.kind(address)
        if kind is not None:
            raise LocalDestination(str(aliases[0]), kind, resolved)


def checked_addresses(rules: Any, local: LocalDestinations | None, addresses: Iterable[Address],
                      port: int) -> list[Address]:
    """
    The addresses of a name that may be connected to.

    :param addresses: what the name resolves to, in the resolver's order.
    :returns: those that pass L{check_destination}, in the same order, each
        once.
    :raises Blocked: (or L{LocalDestination}) the first address's refusal,
        when every address is refused.
    :raises neterror.DNSLookupError: when there are no addresses.
    """
    allowed: list[Address] = []
    refusal: Blocked | None = None
    for address in dict.fromkeys(addresses):
        try:
            check_destination(rules, local, address, port, resolved=True)
        except Blocked as error:
            refusal = refusal or error
        else:
            allowed.append(address)
    if allowed:
        return allowed
    if refusal is not None:
        raise refusal
    raise neterror.DNSLookupError("no addresses")


def _connect_resolved(addresses: list[Address], reactor: Any, rules: Any, local: LocalDestinations | None,
                      port: int, factory: IProtocolFactory, timeout: float) -> "Deferred[Any]":
    return connect_addresses(reactor, checked_addresses(rules, local, addresses, port), port, factory, timeout)


def _connect_address(address: Address, reactor: Any, rules: Any, local: LocalDestinations | None, port: int,
                     factory: IProtocolFactory, timeout: float) -> "Deferred[Any]":
    check_destination(rules, local, address, port)
    connecting: "Deferred[Any]" = endpoint_for(reactor, str(address), port, timeout).connect(factory)
    return connecting
