package vyx

import (
	"strings"
	"unicode/utf8"
)

// QueryPair is one name=value pair of a query string.
type QueryPair struct{ Name, Value string }

// ParseQuery decodes a raw query (the text after the first '?') as
// application/x-www-form-urlencoded (WHATWG), the rule every host follows
// (spec/HOSTS.md, spec/vectors/query.json): split on '&', skip empty pieces, split at the
// first '=', '+' → space, %HH → byte (a '%' without two hex digits stays), then UTF-8 with
// U+FFFD for each maximal invalid subsequence. Unlike url.ParseQuery it never fails and
// does not split on ';'.
//
//	vyx.ParseQuery("a=1&b") // [{a 1} {b }]
func ParseQuery(q string) []QueryPair {
	var out []QueryPair
	for _, piece := range strings.Split(q, "&") {
		if piece == "" {
			continue
		}
		name, value, _ := strings.Cut(piece, "=")
		out = append(out, QueryPair{formDecode(name), formDecode(value)})
	}
	return out
}

func unhexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func formDecode(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			b = append(b, ' ')
			continue
		}
		if c == '%' && i+2 < len(s) {
			hi, ok1 := unhexDigit(s[i+1])
			lo, ok2 := unhexDigit(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return toValidUTF8(b)
}

// toValidUTF8 replaces each maximal subpart of an ill-formed sequence by U+FFFD (Unicode
// §3.9, as WHATWG's UTF-8 decode and Python's "replace" do; strings.ToValidUTF8 merges runs).
func toValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			sb.WriteRune(r)
			i += n
			continue
		}
		// Invalid at i: skip the lead byte and the continuation bytes that could still
		// have completed a valid sequence.
		i += maximalSubpart(b[i:])
		sb.WriteRune(utf8.RuneError)
	}
	return sb.String()
}

func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xbf)
	switch {
	case c >= 0xc2 && c <= 0xdf:
		need = 1
	case c == 0xe0:
		need, lo = 2, 0xa0
	case c >= 0xe1 && c <= 0xec, c == 0xee, c == 0xef:
		need = 2
	case c == 0xed:
		need, hi = 2, 0x9f
	case c == 0xf0:
		need, lo = 3, 0x90
	case c >= 0xf1 && c <= 0xf3:
		need = 3
	case c == 0xf4:
		need, hi = 3, 0x8f
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		n++
		lo, hi = 0x80, 0xbf
	}
	return n
}
