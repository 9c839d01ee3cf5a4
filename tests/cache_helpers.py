"""
What the cache-rule tests share: a fixed time and the Date field for a time.
"""

from netproxy.http.cache.fields import format_http_date

# 2001-09-09T01:46:40Z: a whole second, so formatted dates round-trip.
T0 = 1_000_000_000.0


def date(seconds):
    """
    :returns: a C{Date} field for C{seconds}.
    """
    return (b"Date", format_http_date(seconds))
