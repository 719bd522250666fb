"""Cookie forwarding vectors (spec/vectors/cookies.json), imported by generate.py.

A client may send its cookie as several `cookie` fields: HTTP/2 lets it split the cookie into
crumbs, one cookie-pair each, for header compression (RFC 9113 §8.2.3). The gateway forwards
one `cookie` header, the values of the client's fields joined in order with "; ", so that a
worker's framework, which reads one `Cookie`, sees every pair (PROTOCOL.md §3.4).
"""

CASES = [
    ("none", False, []),
    ("one_field", False, ["a=1"]),
    ("one_field_http2", True, ["a=1; b=2"]),
    ("two_crumbs_http2", True, ["a=1", "b=2"]),
    ("crumbs_keep_order_and_their_own_pairs", True, ["z=9; y=8", "a=1", "m=5"]),
    ("two_fields_http1", False, ["a=1", "b=2"]),
    ("values_kept_as_they_are", True, ["sid=abc,def", "q=\"x y\""]),
]


def join(fields):
    return "; ".join(fields) if fields else None


def cookie_vectors():
    vectors = [{"name": name, "http2": http2, "client": fields, "forwarded": join(fields)}
               for name, http2, fields in CASES]
    assert len({v["name"] for v in vectors}) == len(vectors)
    return {
        "description": "The client sent the cookie fields client (in order, over HTTP/2 when "
                       "http2); the worker's REQUEST carries exactly one cookie header whose "
                       "value is forwarded, or none when forwarded is null. "
                       "See spec/PROTOCOL.md §3.4.",
        "vectors": vectors,
    }
