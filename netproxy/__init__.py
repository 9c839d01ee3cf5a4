"""
netproxy: Twisted network roles (relay, ack and upper servers, clients, and
later the HTTP and message reverse proxies), each started by C{twistd netproxy ROLE}.
"""

__version__ = "0.1.0"
