# -*- test-case-name: tests.socks -*-
"""
The SOCKS5 proxy (RFC 1928, with the username/password login of RFC 1929):
the negotiation, the protocol built on it, its options, service, access log
and metrics.  It shares the HTTP proxy's password file and login checks
(L{netproxy.http.passwords}, L{netproxy.http.auth}).
"""
