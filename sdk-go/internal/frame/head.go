package frame

import (
	"encoding/binary"
	"unicode/utf8"
)

// Field is one (name, value) pair of a head block (§3.4): a param or a header. Values are
// raw bytes; order and repeats are preserved.
type Field struct {
	Name  string
	Value []byte
}

// IsTchar reports whether b is an RFC 9110 tchar.
func IsTchar(b byte) bool {
	switch {
	case b >= '0' && b <= '9', b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// IsMethod reports whether m is a valid REQUEST method: 1+ tchar.
func IsMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !IsTchar(m[i]) {
			return false
		}
	}
	return true
}

// IsHeaderName reports whether n is a valid header name: 1+ tchar, no 'A'–'Z'.
func IsHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !IsTchar(n[i]) || (n[i] >= 'A' && n[i] <= 'Z') {
			return false
		}
	}
	return true
}

// IsHeaderValue reports whether v is a valid field value: HTAB, 0x20–0x7E, 0x80–0xFF.
func IsHeaderValue(v []byte) bool {
	for _, b := range v {
		if b != '\t' && (b < 0x20 || b == 0x7f) {
			return false
		}
	}
	return true
}

// IsTarget reports whether t is a valid REQUEST target: 1+ bytes of 0x21–0x7E starting with '/'.
func IsTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return false
		}
	}
	return true
}

// reader reads the fields of a binary payload; the first failure sticks.
type reader struct {
	p   []byte
	err Kind
}

func (r *reader) u16() uint16 {
	if r.err != "" {
		return 0
	}
	if len(r.p) < 2 {
		r.err = TruncatedPayload
		return 0
	}
	v := binary.BigEndian.Uint16(r.p)
	r.p = r.p[2:]
	return v
}

func (r *reader) str16() []byte {
	n := int(r.u16())
	if r.err != "" {
		return nil
	}
	if len(r.p) < n {
		r.err = TruncatedPayload
		return nil
	}
	v := append([]byte{}, r.p[:n]...)
	r.p = r.p[n:]
	return v
}

func (r *reader) fail(k Kind) {
	if r.err == "" {
		r.err = k
	}
}

func (r *reader) finish() Kind {
	if r.err == "" && len(r.p) != 0 {
		r.err = TrailingBytes
	}
	return r.err
}

// headBlock reads count u16 then count pairs; params check names as UTF-8, headers as
// header names and values.
func (r *reader) headBlock(params bool) []Field {
	n := int(r.u16())
	var out []Field
	for i := 0; i < n && r.err == ""; i++ {
		name := r.str16()
		if r.err != "" {
			break
		}
		if params {
			if len(name) == 0 || !utf8.Valid(name) {
				r.fail(InvalidParamName)
			}
		} else if !IsHeaderName(string(name)) {
			r.fail(InvalidHeaderName)
		}
		value := r.str16()
		if r.err != "" {
			break
		}
		if !params && !IsHeaderValue(value) {
			r.fail(InvalidHeaderValue)
		}
		out = append(out, Field{Name: string(name), Value: value})
	}
	return out
}

func putStr16(b []byte, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func putHeadBlock(b []byte, fs []Field) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
	for _, f := range fs {
		b = putStr16(b, []byte(f.Name))
		b = putStr16(b, f.Value)
	}
	return b
}

func headLen(fs []Field) int {
	n := 2
	for _, f := range fs {
		n += 4 + len(f.Name) + len(f.Value)
	}
	return n
}
