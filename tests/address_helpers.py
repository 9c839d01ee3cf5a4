"""
Spellings of this host, for the hostile tests of destination checks: every
way a client may name an address on this host, as a URL or CONNECT
authority writes it, with the names an injected resolver answers.
"""

from netproxy.testing import FakeNameResolver

#: Names the tests' resolver answers, and where they lead.
NAMES = {
    "localhost.test": "127.0.0.1",
    "zero.test": "0.0.0.0",
    "elsewhere.test": "192.0.2.80",
    "loopback6.test": "::1",
    "both.test": ["::1", "127.0.0.1"],
    "mapped.test": "::ffff:127.0.0.1",
    "link6.test": "fe80::1",
}

#: Hosts (brackets around IPv6) that all reach this host's loopback-only
#: services; each must be refused by default, and matched by a 127.0.0.0/8
#: rule.
THIS_HOST = [
    "0.0.0.0",
    "0",
    "0x0",
    "00",
    "0.0",
    "0.0.0.0.",
    "0.1.2.3",
    "[::]",
    "[0::0]",
    "[::ffff:0.0.0.0]",
    "[::ffff:0:0]",
    "127.0.0.1",
    "127.1",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7F.1",
    "127.255.255.254",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "localhost.test",
    "LOCALHOST.TEST.",
    "zero.test",
    "loopback6.test",
    "both.test",
    "mapped.test",
]


def unbracketed(host):
    """
    :returns: C{host} without the brackets around an IPv6 address.
    """
    return host[1:-1] if host.startswith("[") else host


def name_resolver():
    """
    :returns: a reactor's name resolver answering from L{NAMES} (any case,
        trailing dot allowed), as a real resolver would.
    """
    return FakeNameResolver(lambda name: NAMES.get(name.rstrip(".").lower(), []))
