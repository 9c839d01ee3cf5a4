# -*- test-case-name: tests.test_resolving -*-
"""
Every address of a name, and a connection to the first of them that
accepts: the lookup in both families and the Happy Eyeballs race (RFC 8305)
that L{HostnameEndpoint} does in one step, taken apart so that
L{netproxy.dialing.connect_checked} can check each address in between and
leave out those its rules refuse.
"""

import ipaddress
from ipaddress import IPv4Address, IPv6Address
from itertools import zip_longest
from typing import Any

from twisted.internet import error as neterror
from twisted.internet.address import IPv4Address as IPv4Endpoint, IPv6Address as IPv6Endpoint
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (IAddress, IHostnameResolver, IHostResolution, IProtocolFactory,
                                         IReactorPluggableNameResolver, IResolutionReceiver)
from twisted.python.failure import Failure
from zope.interface import implementer

Address = IPv4Address | IPv6Address


class LookupTimedOut(neterror.DNSLookupError):
    """
    A name's lookup took longer than its deadline.
    """


@implementer(IResolutionReceiver)
class _Addresses:
    """
    Collects what a name resolves to into a L{Deferred}; what arrives after
    the lookup was cancelled or timed out is dropped.
    """

    def __init__(self) -> None:
        self.found: list[Address] = []
        self.resolution: IHostResolution | None = None
        self.cancelled = False
        self.done: "Deferred[list[Address]]" = Deferred(self._cancel)

    def _cancel(self, done: "Deferred[list[Address]]") -> None:
        # What the resolver says once cancelled is not an answer.
        self.cancelled = True
        if self.resolution is not None:
            try:
                self.resolution.cancel()
            except NotImplementedError:
                # Twisted's getaddrinfo resolver cannot stop a lookup
                # running in its thread; its answer is dropped instead.
                pass

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        self.resolution = resolutionInProgress

    def addressResolved(self, address: IAddress) -> None:
        host = getattr(address, "host", None)
        if isinstance(host, str):
            try:
                self.found.append(ipaddress.ip_address(host))
            except ValueError:
                pass

    def resolutionComplete(self) -> None:
        if not (self.cancelled or self.done.called):
            self.done.callback(self.found)


def resolve_addresses(reactor: Any, host: str, timeout: float) -> "Deferred[list[Address]]":
    """
    Look up every IPv4 and IPv6 address of C{host} with the reactor's name
    resolver (C{getaddrinfo} in a thread, by default), as
    L{HostnameEndpoint} does.

    :param timeout: seconds the lookup may take.
    :returns: a L{Deferred} firing with the addresses in the resolver's
        order (RFC 6724's, for C{getaddrinfo}), or failing with
        L{neterror.DNSLookupError} when there are none, with
        L{LookupTimedOut} after C{timeout} seconds.  Cancelling it
        cancels the lookup.
    """
    receiver = _Addresses()
    done = receiver.done
    reactor.nameResolver.resolveHostName(receiver, host, 0)

    def found(addresses: list[Address]) -> list[Address]:
        if not addresses:
            raise neterror.DNSLookupError(f"{host} has no address")
        return addresses

    def timed_out(failure: Failure) -> Failure:
        failure.trap(DeferredTimeout)
        raise LookupTimedOut(f"looking up {host} took more than {timeout:g} seconds")

    return done.addTimeout(timeout, reactor).addCallbacks(found, timed_out)


def interleaved(addresses: list[Address]) -> list[Address]:
    """
    Order addresses to be tried the Happy Eyeballs way (RFC 8305 section
    4): the families alternate, starting with the family of the first
    address, each family keeping its own order.  A host whose IPv6 is
    broken then waits for one attempt, not for every IPv6 address it has.

    :param addresses: the addresses in the resolver's order.
    :returns: the same addresses, interleaved.
    """
    if not addresses:
        return []
    first = [address for address in addresses if address.version == addresses[0].version]
    other = [address for address in addresses if address.version != addresses[0].version]
    ordered: list[Address] = []
    for pair in zip_longest(first, other):
        ordered.extend(address for address in pair if address is not None)
    return ordered


@implementer(IHostResolution)
class _Resolution:
    """
    A lookup answered at once: there is nothing left to cancel.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class _Known:
    """
    Answers any name with addresses already looked up and checked, at once:
    L{HostnameEndpoint} then races its connections to them and to nothing
    else.
    """

    def __init__(self, addresses: list[Address]) -> None:
        self.addresses = addresses

    def resolveHostName(self, resolutionReceiver: IResolutionReceiver, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> IHostResolution:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        for address in self.addresses:
            kind = IPv6Endpoint if address.version == 6 else IPv4Endpoint
            resolutionReceiver.addressResolved(kind("TCP", str(address), portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IReactorPluggableNameResolver)
class _KnownNamesReactor:
    """
    The reactor, but for its name resolver: L{_Known}.
    """

    def __init__(self, reactor: Any, resolver: _Known) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        raise NotImplementedError("the addresses are fixed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def connect_addresses(reactor: Any, addresses: list[Address], port: int, factory: IProtocolFactory,
                      timeout: float) -> "Deferred[Any]":
    """
    Connect C{factory} to the first of C{addresses} that accepts, the Happy
    Eyeballs way: L{HostnameEndpoint} starts an attempt every 0.3 seconds
    until one succeeds, in the order of L{interleaved}.

    :param addresses: the addresses to try, already checked.
    :param timeout: seconds each attempt may take.
    :returns: a L{Deferred} firing with the connected protocol, or failing
        with the last attempt's error.
    """
    if len(addresses) == 1:
        address = addresses[0]
        endpoint_type = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
        return endpoint_type(reactor, str(address), port, timeout=timeout).connect(factory)
    known = _KnownNamesReactor(reactor, _Known(interleaved(addresses)))
    endpoint = HostnameEndpoint(known, "destination.invalid", port, timeout=timeout)
    return endpoint.connect(factory)
