"""
The HTTP proxy's shared cache (RFC 9111), in three layers:

  - the rules, as pure functions of header fields and times:
    L{policy<netproxy.http.cache.policy>} (what may be stored and reused,
    collapsed forwarding), L{freshness<netproxy.http.cache.freshness>}
    (lifetimes and ages), L{fields<netproxy.http.cache.fields>} (directives,
    dates), L{vary<netproxy.http.cache.vary>} (variants),
    L{validation<netproxy.http.cache.validation>} (conditional requests and
    304s), L{invalidation<netproxy.http.cache.invalidation>} (what an unsafe
    request invalidates) and L{status<netproxy.http.cache.status>} (the
    C{Cache-Status} field);
  - L{responses<netproxy.http.cache.responses>}: the cache as the proxy sees
    it (L{Cache<netproxy.http.cache.responses.Cache>}: keys, stored responses
    found for a request, responses stored as they stream past, and the
    misses being fetched);
  - the store it keeps bodies in, behind
    L{IStore<netproxy.http.cache.interfaces.IStore>} and
    L{IWriter<netproxy.http.cache.interfaces.IWriter>}: entries and their
    records (L{entry<netproxy.http.cache.entry>}), the producers that stream
    bodies out (L{producers<netproxy.http.cache.producers>}, and
    L{following<netproxy.http.cache.following>} for a body still being
    written), the writer
    every store's builds on (L{writer<netproxy.http.cache.writer>}), and the
    store on disk (L{sqlite_store<netproxy.http.cache.sqlite_store>}, its
    index in L{sqlite_index<netproxy.http.cache.sqlite_index>} and its large
    bodies in L{body_files<netproxy.http.cache.body_files>}).  Tests use
    L{netproxy.testing.MemoryStore} instead.

Arrows point down: the store knows nothing of HTTP, and nothing here
imports the exchange that drives the cache.
"""
