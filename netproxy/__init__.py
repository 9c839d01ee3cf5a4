# -*- test-case-name: tests.test_package -*-
"""
netproxy: network roles for Twisted, each started by C{twistd netproxy ROLE}
(L{netproxy.tap}), and their clients (C{netproxy-client}, L{netproxy.cli}).

The package has three rooms.  L{netproxy.http} is the HTTP/1.1 forward proxy
and its shared cache.  L{netproxy.message} holds the JSON message roles: the
relay, the reverse proxy and its backend servers, the ack and upper servers,
and their clients.  The modules at the top are the shared core every role
uses: access rules and rules files, reload on SIGHUP, clean shutdown, systemd
notification, connection tracking, dialing, errors, option coercion, metrics,
text files and log observers.  The core imports neither room, and the rooms
never import each other.
"""

__version__ = "0.1.0"
