"""Query-string decoding vectors (spec/vectors/query.json), imported by generate.py.

Hosts decode the query themselves (it is the language's own URL library's job, and the
protocol carries the target raw), but every SDK must give a handler the same pairs. The rule
is WHATWG application/x-www-form-urlencoded parsing, as the Rust SDK does it:

  * the query (after the first '?', without it) is split on '&'; empty pieces are skipped;
  * each piece is split at its first '='; a piece without '=' has the value "";
  * in name and value, '+' becomes a space, then %HH (two hex digits, either case) becomes
    that byte; a '%' not followed by two hex digits stays as it is;
  * the bytes are read as UTF-8, each maximal invalid sequence becoming U+FFFD;
  * pairs keep their order, repeats and blanks.

A query reaches a worker inside the request target, which holds visible ASCII only
(0x21-0x7E), so the inputs here are visible ASCII.
"""

import urllib.parse

HEX = "0123456789abcdefABCDEF"


def decode_component(s):
    raw = s.replace("+", " ").encode("ascii")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and i + 2 < len(raw) and chr(raw[i + 1]) in HEX and chr(raw[i + 2]) in HEX:
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out).decode("utf-8", errors="replace")


def decode_query(query):
    pairs = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append([decode_component(name), decode_component(value)])
    return pairs


CASES = [
    ("empty", ""),
    ("two_pairs", "a=1&b=2"),
    ("plus_is_space", "q=a+b"),
    ("percent_20_is_space", "q=a%20b"),
    ("encoded_plus_stays_plus", "q=%2B1"),
    ("encoded_name", "na%6De=x"),
    ("hex_digits_either_case", "x=%2f%2F"),
    ("no_equals_is_empty_value", "flag"),
    ("blank_value_kept", "b="),
    ("blank_name_kept", "=c"),
    ("lone_equals", "="),
    ("empty_pieces_skipped", "a&&b=&=c"),
    ("leading_and_trailing_ampersands", "&a=1&"),
    ("only_ampersands", "&&&"),
    ("first_equals_splits", "k=v=w"),
    ("repeats_kept_in_order", "t=1&t=2&u=3&t=4"),
    ("utf8_decoded", "e=caf%C3%A9"),
    ("utf8_in_name", "%E2%9C%93=yes"),
    ("invalid_utf8_is_replaced", "x=%FF"),
    ("truncated_utf8_is_replaced", "x=%E2%9C"),
    ("two_invalid_bytes_two_replacements", "x=%C3%28%FF"),
    ("percent_at_end_kept", "x=100%"),
    ("percent_one_digit_kept", "x=%4"),
    ("percent_not_hex_kept", "y=%zz"),
    ("percent_then_encoded", "z=%%41"),
    ("question_mark_in_value", "a=?b"),
    ("semicolon_is_not_a_separator", "a=1;b=2"),
    ("encoded_ampersand_and_equals", "a=%26%3D"),
    ("plus_in_name", "a+b=c+d"),
]


def query_vectors():
    vectors = []
    for name, query in CASES:
        assert all(0x21 <= ord(c) <= 0x7E for c in query), name
        pairs = decode_query(query)
        # An independent check: the standard library's form parser agrees.
        stdlib = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="replace")
        assert [list(p) for p in stdlib] == pairs, (name, stdlib, pairs)
        vectors.append({"name": name, "query": query, "pairs": pairs})
    return {
        "description": "Query-string decoding every SDK gives its handlers "
                       "(application/x-www-form-urlencoded as WHATWG parses it): query is "
                       "the raw query (after '?'); decoding it must give pairs, in order, "
                       "[name, value] as Unicode strings (invalid UTF-8 replaced by U+FFFD). "
                       "See spec/vectors/query.py and spec/HOSTS.md.",
        "vectors": vectors,
    }
