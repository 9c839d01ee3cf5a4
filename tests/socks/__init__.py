"""
Tests for L{netproxy.socks}: the SOCKS5 proxy.
"""
