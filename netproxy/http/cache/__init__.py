"""The HTTP proxy's shared cache (RFC 9111)."""
