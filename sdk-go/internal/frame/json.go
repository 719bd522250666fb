package frame

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// This file is the strict JSON reader and compact writer of §3.8 (the Rust core gets the same
// rules from serde_json plus handshake::check_json_strict). encoding/json alone accepts
// duplicate keys, lone surrogates, invalid UTF-8 and "-0" for an unsigned field, so the
// payload is parsed here into a small tree first.

// maxJSONDepth is the deepest nesting of arrays and objects accepted, the top-level object
// included (§3.8): 127, what serde_json's recursion limit of 128 gives the Rust core.
const maxJSONDepth = 127

type jkind byte

const (
	jNull jkind = iota
	jBool
	jNum
	jStr
	jArr
	jObj
)

type jval struct {
	kind jkind
	s    string // jStr: decoded text; jNum: raw text
	b    bool
	arr  []jval
	keys []string
	vals []jval
}

type jparser struct {
	p     []byte
	i     int
	depth int
	err   string
}

// parseObject parses payload as exactly one JSON object with only whitespace after it.
func parseObject(payload []byte) (*jval, string) {
	if !utf8.Valid(payload) {
		return nil, "invalid UTF-8"
	}
	jp := &jparser{p: payload}
	jp.ws()
	if jp.i >= len(jp.p) || jp.p[jp.i] != '{' {
		return nil, "not a JSON object"
	}
	v := jp.value()
	if jp.err != "" {
		return nil, jp.err
	}
	jp.ws()
	if jp.i != len(jp.p) {
		return nil, "trailing characters after the JSON object"
	}
	return &v, ""
}

func (jp *jparser) fail(msg string) {
	if jp.err == "" {
		jp.err = msg + " at offset " + strconv.Itoa(jp.i)
	}
}

func (jp *jparser) ws() {
	for jp.i < len(jp.p) {
		switch jp.p[jp.i] {
		case ' ', '\t', '\n', '\r':
			jp.i++
		default:
			return
		}
	}
}

func (jp *jparser) lit(word string) bool {
	if len(jp.p)-jp.i >= len(word) && string(jp.p[jp.i:jp.i+len(word)]) == word {
		jp.i += len(word)
		return true
	}
	jp.fail("invalid literal")
	return false
}

func (jp *jparser) value() jval {
	if jp.err != "" {
		return jval{}
	}
	if jp.i >= len(jp.p) {
		jp.fail("unexpected end")
		return jval{}
	}
	switch c := jp.p[jp.i]; {
	case c == '{':
		return jp.object()
	case c == '[':
		return jp.array()
	case c == '"':
		return jval{kind: jStr, s: jp.str()}
	case c == 't':
		jp.lit("true")
		return jval{kind: jBool, b: true}
	case c == 'f':
		jp.lit("false")
		return jval{kind: jBool}
	case c == 'n':
		jp.lit("null")
		return jval{kind: jNull}
	case c == '-' || (c >= '0' && c <= '9'):
		return jval{kind: jNum, s: jp.num()}
	}
	jp.fail("unexpected character")
	return jval{}
}

func (jp *jparser) enter() bool {
	jp.depth++
	if jp.depth > maxJSONDepth {
		jp.fail("nesting too deep")
		return false
	}
	return true
}

func (jp *jparser) object() jval {
	v := jval{kind: jObj}
	if !jp.enter() {
		return v
	}
	defer func() { jp.depth-- }()
	jp.i++ // {
	jp.ws()
	if jp.i < len(jp.p) && jp.p[jp.i] == '}' {
		jp.i++
		return v
	}
	seen := map[string]bool{}
	for jp.err == "" {
		jp.ws()
		if jp.i >= len(jp.p) || jp.p[jp.i] != '"' {
			jp.fail("expected a key")
			break
		}
		k := jp.str()
		if jp.err != "" {
			break
		}
		if seen[k] {
			jp.fail("duplicate key " + strconv.Quote(k))
			break
		}
		seen[k] = true
		jp.ws()
		if jp.i >= len(jp.p) || jp.p[jp.i] != ':' {
			jp.fail("expected ':'")
			break
		}
		jp.i++
		jp.ws()
		val := jp.value()
		v.keys = append(v.keys, k)
		v.vals = append(v.vals, val)
		jp.ws()
		if jp.i < len(jp.p) && jp.p[jp.i] == ',' {
			jp.i++
			continue
		}
		if jp.i < len(jp.p) && jp.p[jp.i] == '}' {
			jp.i++
			return v
		}
		jp.fail("expected ',' or '}'")
	}
	return v
}

func (jp *jparser) array() jval {
	v := jval{kind: jArr, arr: []jval{}}
	if !jp.enter() {
		return v
	}
	defer func() { jp.depth-- }()
	jp.i++ // [
	jp.ws()
	if jp.i < len(jp.p) && jp.p[jp.i] == ']' {
		jp.i++
		return v
	}
	for jp.err == "" {
		jp.ws()
		v.arr = append(v.arr, jp.value())
		jp.ws()
		if jp.i < len(jp.p) && jp.p[jp.i] == ',' {
			jp.i++
			continue
		}
		if jp.i < len(jp.p) && jp.p[jp.i] == ']' {
			jp.i++
			return v
		}
		jp.fail("expected ',' or ']'")
	}
	return v
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (jp *jparser) str() string {
	jp.i++ // "
	var out []byte
	for jp.err == "" {
		if jp.i >= len(jp.p) {
			jp.fail("unterminated string")
			break
		}
		c := jp.p[jp.i]
		switch {
		case c == '"':
			jp.i++
			return string(out)
		case c < 0x20:
			jp.fail("control character in string")
		case c != '\\':
			out = append(out, c)
			jp.i++
		default:
			if jp.i+1 >= len(jp.p) {
				jp.fail("unterminated escape")
				break
			}
			e := jp.p[jp.i+1]
			jp.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(jp.p[jp.i:])
				if !ok {
					jp.fail("invalid \\u escape")
					break
				}
				jp.i += 4
				if r >= 0xdc00 && r <= 0xdfff {
					jp.fail("lone surrogate escape")
					break
				}
				if r >= 0xd800 && r <= 0xdbff {
					rest := jp.p[jp.i:]
					if len(rest) < 6 || rest[0] != '\\' || rest[1] != 'u' {
						jp.fail("lone surrogate escape")
						break
					}
					lo, ok := hex4(rest[2:])
					if !ok || lo < 0xdc00 || lo > 0xdfff {
						jp.fail("lone surrogate escape")
						break
					}
					jp.i += 6
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				}
				out = utf8.AppendRune(out, r)
			default:
				jp.fail("invalid escape")
			}
		}
	}
	return ""
}

func (jp *jparser) num() string {
	start := jp.i
	digits := func() int {
		n := 0
		for jp.i < len(jp.p) && jp.p[jp.i] >= '0' && jp.p[jp.i] <= '9' {
			jp.i++
			n++
		}
		return n
	}
	if jp.p[jp.i] == '-' {
		jp.i++
	}
	if jp.i < len(jp.p) && jp.p[jp.i] == '0' {
		jp.i++
	} else if digits() == 0 {
		jp.fail("invalid number")
		return ""
	}
	if jp.i < len(jp.p) && jp.p[jp.i] == '.' {
		jp.i++
		if digits() == 0 {
			jp.fail("invalid number")
			return ""
		}
	}
	if jp.i < len(jp.p) && (jp.p[jp.i] == 'e' || jp.p[jp.i] == 'E') {
		jp.i++
		if jp.i < len(jp.p) && (jp.p[jp.i] == '+' || jp.p[jp.i] == '-') {
			jp.i++
		}
		if digits() == 0 {
			jp.fail("invalid number")
			return ""
		}
	}
	text := string(jp.p[start:jp.i])
	// §3.8: a number too large for a double (1e400) is an error anywhere, unknown keys
	// included, as in the Rust core's serde_json; underflow (1e-400) is fine.
	if f, err := strconv.ParseFloat(text, 64); err != nil && math.IsInf(f, 0) {
		jp.fail("number out of range")
		return ""
	}
	return text
}

// fields reads the members of one JSON object into typed values; the first error sticks.
type fields struct {
	o   *jval
	err string
}

// get returns the member named k, or nil when it is absent or null. A null for a required
// field is an error.
func (f *fields) get(k string, required bool) *jval {
	for i, key := range f.o.keys {
		if key == k {
			v := &f.o.vals[i]
			if v.kind == jNull {
				break
			}
			return v
		}
	}
	if required && f.err == "" {
		f.err = "missing field " + strconv.Quote(k)
	}
	return nil
}

func (f *fields) wrong(k, want string) {
	if f.err == "" {
		f.err = "field " + strconv.Quote(k) + ": expected " + want
	}
}

func (f *fields) str(k string, required bool) string {
	v := f.get(k, required)
	if v == nil {
		return ""
	}
	if v.kind != jStr {
		f.wrong(k, "a string")
		return ""
	}
	return v.s
}

// boolean reads an optional JSON boolean (false when absent or null).
func (f *fields) boolean(k string) bool {
	v := f.get(k, false)
	if v == nil {
		return false
	}
	if v.kind != jBool {
		f.wrong(k, "a boolean")
		return false
	}
	return v.b
}

// uint reads an integer 0..=2^64−1 written with digits only (no sign, fraction or exponent).
func (f *fields) uint(k string) uint64 {
	v := f.get(k, true)
	if v == nil {
		return 0
	}
	return f.uintOf(k, v)
}

// uintOr reads an optional integer as uint does; absent or null is def.
func (f *fields) uintOr(k string, def uint64) uint64 {
	v := f.get(k, false)
	if v == nil {
		return def
	}
	return f.uintOf(k, v)
}

func (f *fields) uintOf(k string, v *jval) uint64 {
	if v.kind != jNum {
		f.wrong(k, "an integer")
		return 0
	}
	for i := 0; i < len(v.s); i++ {
		if v.s[i] < '0' || v.s[i] > '9' {
			f.wrong(k, "an unsigned integer without sign, fraction or exponent")
			return 0
		}
	}
	n, err := strconv.ParseUint(v.s, 10, 64)
	if err != nil {
		f.wrong(k, "an integer at most 2^64-1")
		return 0
	}
	return n
}

func (f *fields) routes(k string) []Route {
	v := f.get(k, true)
	if v == nil {
		return nil
	}
	if v.kind != jArr {
		f.wrong(k, "an array")
		return nil
	}
	out := make([]Route, 0, len(v.arr))
	for i := range v.arr {
		e := &v.arr[i]
		if e.kind != jObj {
			f.wrong(k, "an array of route objects")
			return nil
		}
		rf := &fields{o: e}
		r := Route{ID: rf.uint("id"), Method: rf.str("method", true), Path: rf.str("path", true),
			Idempotent: rf.boolean("idempotent")}
		if rf.err != "" {
			if f.err == "" {
				f.err = "route " + strconv.Itoa(i) + ": " + rf.err
			}
			return nil
		}
		out = append(out, r)
	}
	return out
}

func (f *fields) labels(k string) map[string]string {
	out := map[string]string{}
	v := f.get(k, false)
	if v == nil {
		return out
	}
	if v.kind != jObj {
		f.wrong(k, "an object")
		return out
	}
	for i, key := range v.keys {
		if v.vals[i].kind != jStr {
			f.wrong(k, "an object of strings")
			return out
		}
		out[key] = v.vals[i].s
	}
	return out
}

// strs reads an optional array of strings (absent or null: nil).
func (f *fields) strs(k string) []string {
	v := f.get(k, false)
	if v == nil {
		return nil
	}
	if v.kind != jArr {
		f.wrong(k, "an array of strings")
		return nil
	}
	out := make([]string, 0, len(v.arr))
	for _, e := range v.arr {
		if e.kind != jStr {
			f.wrong(k, "an array of strings")
			return nil
		}
		out = append(out, e.s)
	}
	return out
}

// jsonWriter emits compact JSON: no whitespace, raw UTF-8, keys in call order.
type jsonWriter struct {
	b     []byte
	first bool
}

func (w *jsonWriter) open()  { w.b = append(w.b, '{'); w.first = true }
func (w *jsonWriter) close() { w.b = append(w.b, '}'); w.first = false }

func (w *jsonWriter) key(k string) {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jsonWriter) str(k, v string) { w.key(k); w.b = appendJSONString(w.b, v) }
func (w *jsonWriter) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

// strs writes an array of strings, and nothing at all when it is empty.
func (w *jsonWriter) strs(k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	w.key(k)
	w.b = append(w.b, '[')
	for i, v := range vs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendJSONString(w.b, v)
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) routes(k string, rs []Route) {
	w.key(k)
	w.b = append(w.b, '[')
	for i, r := range rs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.open()
		w.uint("id", r.ID)
		w.str("method", r.Method)
		w.str("path", r.Path)
		if r.Idempotent {
			w.key("idempotent")
			w.b = append(w.b, "true"...)
		}
		w.close()
	}
	w.b = append(w.b, ']')
}

// appendJSONString writes s as a JSON string: `"` and `\` escaped, control characters as
// \n, \r, \t, \b, \f or \u00XX, everything else (non-ASCII included) raw. Invalid UTF-8 in s
// is replaced by U+FFFD so the output is always valid.
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexd[r>>4], hexd[r&15])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
