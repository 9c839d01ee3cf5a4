# -*- test-case-name: tests.http -*-
"""
The HTTP forward proxy: parsing and framing of HTTP/1.1 messages (RFC 9112),
header handling (RFC 9110), the proxy built on them, and its RFC 9111 cache
(L{netproxy.http.cache}).
"""
