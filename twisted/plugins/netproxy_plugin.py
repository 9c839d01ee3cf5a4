# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin for netproxy: one ServiceMaker, importing nothing heavy,
because twistd imports every plugin just to list its commands.
"""

from twisted.application.service import ServiceMaker

netproxy = ServiceMaker(
    "netproxy",
    "netproxy.tap",
    "netproxy: HTTP and SOCKS5 proxies, message reverse proxy, relay and socket services",
    "netproxy",
)
