"""
Tests for L{netproxy.socks_codes}: the numbers of SOCKS5 on the wire, one
set for the SOCKS role and the SOCKS client.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy import socks_client, socks_codes
from netproxy.socks import negotiation


class SocksCodesTests(SynchronousTestCase):
    """
    The numbers are RFC 1928's and RFC 1929's, and both sides use them.
    """

    def test_rfc_values(self):
        """Versions, methods, commands, address types and reply codes are the RFCs' numbers."""
        codes = socks_codes
        self.assertEqual((codes.VERSION, codes.LOGIN_VERSION), (5, 1))
        self.assertEqual((codes.NO_AUTHENTICATION, codes.USERNAME_PASSWORD, codes.NO_ACCEPTABLE_METHODS),
                         (0x00, 0x02, 0xFF))
        self.assertEqual((codes.CONNECT, codes.BIND, codes.UDP_ASSOCIATE), (1, 2, 3))
        self.assertEqual((codes.IPV4, codes.DOMAIN_NAME, codes.IPV6), (1, 3, 4))
        self.assertEqual([codes.SUCCEEDED, codes.GENERAL_FAILURE, codes.NOT_ALLOWED, codes.NETWORK_UNREACHABLE,
                          codes.HOST_UNREACHABLE, codes.CONNECTION_REFUSED, codes.TTL_EXPIRED,
                          codes.COMMAND_NOT_SUPPORTED, codes.ADDRESS_TYPE_NOT_SUPPORTED], list(range(9)))

    def test_failures_in_words(self):
        """Every failure code has its words; success and codes past 8 have none."""
        self.assertEqual(sorted(socks_codes.REPLIES), list(range(1, 9)))
        self.assertEqual(socks_codes.REPLIES[socks_codes.NOT_ALLOWED], "connection not allowed by ruleset")
        self.assertNotIn(socks_codes.SUCCEEDED, socks_codes.REPLIES)
        self.assertNotIn(9, socks_codes.REPLIES)

    def test_one_set(self):
        """The role's parser and the client name the same numbers."""
        for name in ("VERSION", "LOGIN_VERSION", "CONNECT", "IPV4", "DOMAIN_NAME", "IPV6", "TTL_EXPIRED"):
            with self.subTest(name=name):
                self.assertIs(getattr(negotiation, name), getattr(socks_codes, name))
                self.assertIs(getattr(socks_client, name), getattr(socks_codes, name))
        self.assertIs(negotiation.COMMAND_NAMES, socks_codes.COMMAND_NAMES)
