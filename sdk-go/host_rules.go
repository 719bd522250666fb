package vyx

// The host rules read off a request (spec/HOSTS.md §5), the twin of core/src/host_rules.rs:
// the client's IP, the scheme and the HTTP version, from the forwarding headers the gateway
// sets, held to spec/vectors/client.json.

import (
	"bytes"
	"net/netip"
	"strings"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// clientIP is the client's IP as the gateway saw it: the last element of the last
// x-forwarded-for field, which the gateway appends for the peer it accepted (earlier
// elements can be forged). An IPv4 or IPv6 address, with or without a port, or an IPv6
// address in brackets; false for anything else, with no fall-back to an earlier element.
func clientIP(headers []frame.Field) (netip.Addr, bool) {
	e, ok := lastElement(headers, "x-forwarded-for")
	if !ok || strings.IndexByte(e, '%') >= 0 { // netip accepts zones; the rule does not
		return netip.Addr{}, false
	}
	if rest, ok := strings.CutPrefix(e, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok || after != "" && !(after[0] == ':' && isPort(after[1:])) {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(host)
		return ip, err == nil && ip.Is6()
	}
	if strings.Count(e, ":") == 1 {
		host, port, _ := strings.Cut(e, ":")
		ip, err := netip.ParseAddr(host)
		return ip, err == nil && ip.Is4() && isPort(port)
	}
	ip, err := netip.ParseAddr(e)
	return ip, err == nil
}

// scheme is "https" when the last element of the last x-forwarded-proto field is https in
// any case, else "http".
func scheme(headers []frame.Field) string {
	if e, ok := lastElement(headers, "x-forwarded-proto"); ok && strings.EqualFold(e, "https") {
		return "https"
	}
	return "http"
}

// httpVersion is the client's HTTP version (major, minor), read from the last element of
// the last via field, which the gateway appends naming the protocol it received ("2 vyx"):
// its first word is an optional "HTTP/" and one digit 1 to 9, optionally "." and one more
// digit. Absent or unreadable, it is HTTP/1.1.
func httpVersion(headers []frame.Field) (major, minor int) {
	e, ok := lastElement(headers, "via")
	if !ok {
		return 1, 1
	}
	if i := strings.IndexAny(e, " \t"); i >= 0 {
		e = e[:i]
	}
	v := strings.TrimPrefix(e, "HTTP/")
	switch {
	case len(v) == 1 && '1' <= v[0] && v[0] <= '9':
		return int(v[0] - '0'), 0
	case len(v) == 3 && '1' <= v[0] && v[0] <= '9' && v[1] == '.' && '0' <= v[2] && v[2] <= '9':
		return int(v[0] - '0'), int(v[2] - '0')
	}
	return 1, 1
}

// lastElement is the last comma-separated element of the last field name, without spaces
// and tabs.
func lastElement(headers []frame.Field, name string) (string, bool) {
	for i := len(headers) - 1; i >= 0; i-- {
		if strings.EqualFold(headers[i].Name, name) {
			v := headers[i].Value
			v = v[bytes.LastIndexByte(v, ',')+1:]
			return string(bytes.Trim(v, " \t")), true
		}
	}
	return "", false
}

// isPort reports whether p is a port as a forwarding element may carry it: 1 to 5 digits.
func isPort(p string) bool {
	if len(p) < 1 || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
