package protocol

// Route patterns (core/src/routing.rs): a worker checks its patterns before HELLO; it
// does not route (the gateway names the matched route in REQUEST).

import (
	"fmt"
	"strings"
)

// PatternShape checks a route pattern (§2.5: at most 4096 bytes and 128 segments) and
// returns its shape: every {name} replaced by {} and {*name} by {*}.
//
//	protocol.PatternShape("/a/{id}/{*rest}") // "/a/{}/{*}", nil
func PatternShape(path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("must start with /")
	}
	// The bounds come first, so that nothing below works on a longer input.
	if len(path) > MaxPatternLen {
		return "", fmt.Errorf("is longer than %d bytes", MaxPatternLen)
	}
	if strings.Count(path, "/") > MaxPatternSegments {
		return "", fmt.Errorf("has more than %d segments", MaxPatternSegments)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= 0x20 || c == 0x7f || c == '?' || c == '#' {
			return "", fmt.Errorf("contains the character %q", c)
		}
	}
	segs := strings.Split(path[1:], "/")
	names := map[string]bool{}
	var shape strings.Builder
	for i, s := range segs {
		shape.WriteByte('/')
		if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") || len(s) < 2 {
			if strings.ContainsAny(s, "{}") {
				return "", fmt.Errorf("segment %q: a literal must not contain { or }", s)
			}
			shape.WriteString(s)
			continue
		}
		name, catchAll := s[1:len(s)-1], false
		if strings.HasPrefix(name, "*") {
			name, catchAll = name[1:], true
		}
		if name == "" || strings.ContainsAny(name, "{}/*") {
			return "", fmt.Errorf("segment %q: a parameter name is 1+ characters, none of { } / *", s)
		}
		if names[name] {
			return "", fmt.Errorf("parameter %q is named twice", name)
		}
		names[name] = true
		if catchAll {
			if i != len(segs)-1 {
				return "", fmt.Errorf("the catch-all %q must be the last segment", s)
			}
			shape.WriteString("{*}")
		} else {
			shape.WriteString("{}")
		}
	}
	return shape.String(), nil
}
