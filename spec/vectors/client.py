"""Client address, scheme and HTTP version vectors (spec/vectors/client.json), imported by generate.py.

The gateway records the client in the forwarding headers it sets (PROTOCOL.md §3.4); a host
reads them back the same way in every SDK (spec/HOSTS.md §5), through the core's
IncomingRequest (Go: its twin):

  * the client's IP is the last element of the last `x-forwarded-for` field: the address of
    the peer the gateway accepted, which the gateway appends itself (earlier elements come
    from the client or from proxies before the gateway, and can be forged). Elements are
    separated by ',' and trimmed of spaces and tabs. An element is an IPv4 address, an
    IPv6 address, either with a port (`192.0.2.1:4711`, `[2001:db8::1]:8080`: 1 to 5
    digits, dropped), or an IPv6 address in brackets; anything else (a zone `%eth0`, a name,
    `unknown`, an empty element, IPv4 leading zeros) gives no address, with no fall-back to
    an earlier element;
  * the scheme is `https` when the last element of the last `x-forwarded-proto` field is
    `https` in any case, else `http`;
  * the client's HTTP version is read from the last element of the last `via` field, which
    the gateway appends itself naming the protocol it received (`1.0 vyx`, `1.1 vyx`,
    `2 vyx`; RFC 9110 §7.6.3). The element's first word (up to a space or tab) is an
    optional `HTTP/` (in that case) and a version: one digit 1 to 9, optionally `.` and one
    more digit; the minor version is 0 when absent. Anything else, or no `via`, is HTTP/1.1.

Header names are compared without case.
"""

import ipaddress


def _ip(text, version=None):
    if "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if version is not None and ip.version != version:
        return None
    return str(ip)


def _port_ok(p):
    return 1 <= len(p) <= 5 and all("0" <= c <= "9" for c in p)


def _last_element(headers, name):
    lines = [v for n, v in headers if n.lower() == name]
    if not lines:
        return None
    return lines[-1].rsplit(",", 1)[-1].strip(" \t")


def client_ip(headers):
    e = _last_element(headers, "x-forwarded-for")
    if e is None:
        return None
    if e.startswith("["):
        host, sep, rest = e[1:].partition("]")
        if not sep or (rest and not (rest[0] == ":" and _port_ok(rest[1:]))):
            return None
        return _ip(host, 6)
    if e.count(":") == 1:
        host, _, port = e.partition(":")
        return _ip(host, 4) if _port_ok(port) else None
    return _ip(e)


def scheme(headers):
    e = _last_element(headers, "x-forwarded-proto")
    return "https" if e is not None and e.lower() == "https" else "http"


def http_version(headers):
    e = _last_element(headers, "via")
    if e is None:
        return [1, 1]
    protocol = e.replace("\t", " ").split(" ", 1)[0]
    version = protocol[len("HTTP/"):] if protocol.startswith("HTTP/") else protocol
    if len(version) == 1 and "1" <= version <= "9":
        return [int(version), 0]
    if len(version) == 3 and "1" <= version[0] <= "9" and version[1] == "." and "0" <= version[2] <= "9":
        return [int(version[0]), int(version[2])]
    return [1, 1]


CASES = [
    ("the_gateway_alone", [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "http")]),
    ("behind_a_trusted_proxy_the_last_element_is_the_peer",
     [("x-forwarded-for", "198.51.100.7, 10.0.0.2"), ("x-forwarded-proto", "https")]),
    ("the_last_field_of_several", [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "10.0.0.2")]),
    ("ipv6", [("x-forwarded-for", "2001:db8::1")]),
    ("ipv6_in_brackets", [("x-forwarded-for", "[2001:db8::1]")]),
    ("ipv6_with_a_port", [("x-forwarded-for", "[2001:db8::1]:8080")]),
    ("ipv4_with_a_port", [("x-forwarded-for", "192.0.2.1:4711")]),
    ("spaces_and_tabs_trimmed", [("x-forwarded-for", "198.51.100.7 ,\t 192.0.2.1 \t")]),
    ("names_without_case", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-Proto", "HTTPS")]),
    ("no_forwarding_headers", [("host", "example.com")]),
    ("no_fall_back_to_a_forgeable_element", [("x-forwarded-for", "198.51.100.7, unknown")]),
    ("an_empty_last_element", [("x-forwarded-for", "198.51.100.7,")]),
    ("an_empty_field", [("x-forwarded-for", "")]),
    ("a_zone_is_not_an_address", [("x-forwarded-for", "fe80::1%eth0")]),
    ("ipv4_leading_zeros_refused", [("x-forwarded-for", "010.0.0.1")]),
    ("ipv4_in_brackets_refused", [("x-forwarded-for", "[192.0.2.1]")]),
    ("a_port_of_six_digits_refused", [("x-forwarded-for", "192.0.2.1:123456")]),
    ("a_name_is_not_an_address", [("x-forwarded-for", "client.example")]),
    ("scheme_the_last_element", [("x-forwarded-proto", "https, http")]),
    ("scheme_the_last_field", [("x-forwarded-proto", "http"), ("x-forwarded-proto", "https")]),
    ("scheme_other_values_are_http", [("x-forwarded-proto", "wss")]),
    ("scheme_trimmed", [("x-forwarded-proto", " https\t")]),
    ("via_http_1_0", [("via", "1.0 vyx")]),
    ("via_http_1_1", [("via", "1.1 vyx")]),
    ("via_http_2", [("via", "2 vyx")]),
    ("via_the_last_element_after_the_client_s", [("via", "1.1 proxy.example, 2 vyx")]),
    ("via_the_last_field", [("Via", "2 cdn (edge, eu)"), ("via", "1.0 vyx")]),
    ("via_protocol_name_http", [("via", "HTTP/2.0 vyx")]),
    ("via_a_tab_before_the_receiver", [("via", "2\tvyx")]),
    ("via_another_protocol_is_http_1_1", [("via", "h2/2 vyx")]),
    ("via_protocol_name_with_case_is_http_1_1", [("via", "http/2 vyx")]),
    ("via_two_digit_major_is_http_1_1", [("via", "20 vyx")]),
    ("via_major_0_is_http_1_1", [("via", "0.9 vyx")]),
    ("via_an_empty_last_element_is_http_1_1", [("via", "2 vyx,")]),
    ("no_via_is_http_1_1", [("host", "example.com")]),
]


def client_vectors():
    return {
        "description": "The client's IP and the scheme a host reads off a request's forwarding "
                       "headers (spec/HOSTS.md §5): client_ip from the last element of the last "
                       "x-forwarded-for field (null when it is not an address), scheme https "
                       "when the last element of the last x-forwarded-proto field is https in "
                       "any case, else http, and http_version [major, minor] from the last "
                       "element of the last via field (HTTP/1.1 when absent or unreadable). "
                       "See spec/vectors/client.py.",
        "vectors": [
            {"name": name, "headers": [[n, v] for n, v in headers],
             "client_ip": client_ip(headers), "scheme": scheme(headers),
             "http_version": http_version(headers)}
            for name, headers in CASES
        ],
    }
