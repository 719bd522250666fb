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

// reader reads the fields of a binary payload; the first failure sticks. The frame it
// decodes owns one copy of the payload and one string made from it: byte strings are
// slices of the copy and names are slices of the string, so a REQUEST costs two
// allocations for all its bytes instead of two or three per field (the caller's buffer is
// reused for the next message, so a frame cannot alias it).
type reader struct {
	b   []byte // the payload's copy
	s   string // the same bytes, for names, method and target
	at  int
	err Kind
}

func newReader(p []byte) *reader {
	b := append(make([]byte, 0, len(p)), p...)
	return &reader{b: b, s: string(b)}
}

func (r *reader) left() int { return len(r.b) - r.at }

func (r *reader) u16() uint16 {
	if r.err != "" {
		return 0
	}
	if r.left() < 2 {
		r.err = TruncatedPayload
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.at:])
	r.at += 2
	return v
}

// span16 reads a u16 length and skips that many bytes; it returns where they are.
func (r *reader) span16() (from, to int) {
	n := int(r.u16())
	if r.err != "" {
		return 0, 0
	}
	if r.left() < n {
		r.err = TruncatedPayload
		return 0, 0
	}
	from = r.at
	r.at += n
	return from, r.at
}

// bytes16 is a length-prefixed byte string, capped so that an append cannot reach the
// next field.
func (r *reader) bytes16() []byte {
	from, to := r.span16()
	return r.b[from:to:to]
}

// str16 is a length-prefixed string.
func (r *reader) str16() string {
	from, to := r.span16()
	return r.s[from:to]
}

func (r *reader) fail(k Kind) {
	if r.err == "" {
		r.err = k
	}
}

func (r *reader) finish() Kind {
	if r.err == "" && r.left() != 0 {
		r.err = TrailingBytes
	}
	return r.err
}

// headBlock reads count u16 then count pairs; params check names as UTF-8, headers as
// header names and values.
func (r *reader) headBlock(params bool) []Field {
	n := int(r.u16())
	if n == 0 || r.err != "" {
		return nil
	}
	// A field takes at least 4 bytes: a count the payload cannot hold reserves nothing more.
	out := make([]Field, 0, min(n, r.left()/4))
	for i := 0; i < n && r.err == ""; i++ {
		name := r.str16()
		if r.err != "" {
			break
		}
		if params {
			if len(name) == 0 || !utf8.ValidString(name) {
				r.fail(InvalidParamName)
			}
		} else if !IsHeaderName(name) {
			r.fail(InvalidHeaderName)
		}
		value := r.bytes16()
		if r.err != "" {
			break
		}
		if !params && !IsHeaderValue(value) {
			r.fail(InvalidHeaderValue)
		}
		out = append(out, Field{Name: name, Value: value})
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
