# -*- test-case-name: tests.test_socks_codes -*-
"""
The numbers of SOCKS5 on the wire (RFC 1928, and RFC 1929's login), which
the SOCKS role's parser (L{netproxy.socks.negotiation}) and the SOCKS
client of the parent proxies (L{netproxy.socks_client}) both speak.
"""

VERSION = 5
LOGIN_VERSION = 1

# Authentication methods (RFC 1928 section 3).
NO_AUTHENTICATION = 0x00
USERNAME_PASSWORD = 0x02
NO_ACCEPTABLE_METHODS = 0xFF

# Commands (RFC 1928 section 4).
CONNECT = 1
BIND = 2
UDP_ASSOCIATE = 3
COMMAND_NAMES = {CONNECT: "CONNECT", BIND: "BIND", UDP_ASSOCIATE: "UDP-ASSOCIATE"}

# Address types.
IPV4 = 1
DOMAIN_NAME = 3
IPV6 = 4

# Reply codes (RFC 1928 section 6).
SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2
NETWORK_UNREACHABLE = 3
HOST_UNREACHABLE = 4
CONNECTION_REFUSED = 5
TTL_EXPIRED = 6
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8

#: RFC 1928's failure codes, in words, for error pages and logs.
REPLIES = {
    GENERAL_FAILURE: "general SOCKS server failure",
    NOT_ALLOWED: "connection not allowed by ruleset",
    NETWORK_UNREACHABLE: "network unreachable",
    HOST_UNREACHABLE: "host unreachable",
    CONNECTION_REFUSED: "connection refused",
    TTL_EXPIRED: "TTL expired",
    COMMAND_NOT_SUPPORTED: "command not supported",
    ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}
