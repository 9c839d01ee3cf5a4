"""
The HTTP forward proxy: parsing and framing of HTTP/1.1 messages (RFC 9112),
header handling (RFC 9110), and the proxy built on them.
"""
