"""
Hypothesis strategies the fuzz tests share: mutate valid bytes (flip,
delete, duplicate, insert the tokens parsers trip on, truncate) and cut a
byte string into the pieces of many C{dataReceived} calls.
"""

from hypothesis import strategies as st

# Bytes that change how a line-based parser reads a head: line ends alone
# and together, NUL, obs-fold, whitespace where names end, a colon, bytes
# outside ASCII, and lines longer than the limits (request line 8 KiB, head
# 64 KiB).
HEAD_TOKENS = (
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"\0", b" ", b"\t", b"\r\n ", b"\r\n\t", b":", b" :",
    b"\xff", b"\x1b", b"\x7f", b"HTTP/1.1", b"HTTP/1.2", b"HTTP/2.0", b",", b";",
    b"Content-Length: 5\r\n", b"Content-Length: 0\r\n", b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: identity\r\n", b"Connection: close\r\n",
    b"Connection: keep-alive\r\n", b"Via: 1.1 netproxy\r\n", b"Expect: 100-continue\r\n",
    b"Cache-Control: max-age=60\r\n", b"0\r\n\r\n", b"GET http://192.0.2.10/ HTTP/1.1\r\n\r\n",
    b"a" * 9000, b"X-Long: " + b"b" * 70000 + b"\r\n",
)

# The same for a chunked body: sizes, extensions, trailers, line ends.
CHUNK_TOKENS = (
    b"\r", b"\n", b"\r\n", b"0", b"0\r\n\r\n", b"f", b"ffffffffffffffff", b";", b";a=b", b';a="b\\"c"', b" ",
    b"\t", b"\0", b"X-Trailer: 1\r\n", b"-1\r\n", b"0x10\r\n", b"z" * 5000, b"GET / HTTP/1.1\r\n\r\n",
)

# JSON's structure and the bytes its scanner watches.
JSON_TOKENS = (
    b"{", b"}", b'"', b"\\", b"\\u0000", b"\\ud800", b"[", b"]", b":", b",", b" ", b"\n", b"\0", b"\xff",
    b"\xc3", b"NaN", b"Infinity", b"1e999", b"-0", b"9" * 5000, b"{" * 2000, b"}" * 50, b"null", b"true",
    b'"type": 0', b'"type": "1"', b'"type": 7', b'"server_port": 0', b'"server_port": 70000',
    b'"server_ip": "0.0.0.0"', b'"payload": 5', b"x" * 70000,
)

_KINDS = ("flip", "delete", "duplicate", "insert", "insert", "truncate")


@st.composite
def mutated(draw, base, tokens, max_mutations=4):
    """
    A byte string drawn from C{base}, then changed by up to
    C{max_mutations} mutations: a byte replaced, a range deleted or
    duplicated, one of C{tokens} (or a random byte string) inserted, the
    end cut off.  A third of the time it is left as it is, valid.
    """
    data = bytearray(draw(base))
    if not draw(st.integers(0, 2)):
        return bytes(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        kind = draw(st.sampled_from(_KINDS))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.one_of(st.sampled_from(tokens), st.binary(min_size=1, max_size=8)))
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


@st.composite
def chunked_bodies(draw):
    """
    A valid chunked body: chunks with and without extensions, the last
    chunk, maybe trailer fields.
    """
    out = []
    for piece in draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4)):
        extension = draw(st.sampled_from((b"", b";a=b", b' ; name="v"')))
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
    out.append(b"0\r\n")
    out.extend(draw(st.lists(st.sampled_from((b"X-Sum: 1\r\n", b"Expires: 0\r\n")), max_size=2)))
    out.append(b"\r\n")
    return b"".join(out)


@st.composite
def pieces(draw, data):
    """
    C{data} cut into the pieces of successive C{dataReceived} calls: in
    one, at a few random offsets, or (when short) one byte at a time.
    """
    how = draw(st.sampled_from(("whole", "cuts", "cuts", "bytes")))
    if how == "whole" or not data:
        return [data] if data else []
    if how == "bytes" and len(data) <= 512:
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12))))
    bounds = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]
