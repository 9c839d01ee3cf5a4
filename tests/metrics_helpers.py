"""
What the tests of metrics pages share: a page's samples, read by
prometheus_client's own parser (so the page is valid, too).
"""

from prometheus_client.parser import text_string_to_metric_families


def samples(page):
    """
    :param page: a metrics page, as bytes.
    :returns: C{{(sample name, sorted (label, value) pairs): value}}.
    """
    found = {}
    for family in text_string_to_metric_families(page.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
