package frame

import "encoding/binary"

// Informational is an INFORMATIONAL frame (§3.11), worker → gateway, extension
// "informational": an interim 1xx response before the stream's RESPONSE.
type Informational struct {
	StreamID uint32
	Status   uint16 // 100..=199 except 101
	Headers  []Field
}

// IsInformationalStatus reports whether status may be sent in INFORMATIONAL.
func IsInformationalStatus(status uint16) bool {
	return status >= 100 && status <= 199 && status != 101
}

// Type returns TypeInformational.
func (*Informational) Type() byte { return TypeInformational }

// Encode returns the whole message (fields unchecked; see IsHeaderName, IsHeaderValue).
func (s *Informational) Encode() []byte {
	b := header(TypeInformational, false, s.StreamID, 2+headLen(s.Headers))
	b = binary.BigEndian.AppendUint16(b, s.Status)
	return putHeadBlock(b, s.Headers)
}

func decodeInformational(sid uint32, p []byte) (Frame, Kind) {
	r := newReader(p)
	s := &Informational{StreamID: sid}
	s.Status = r.u16()
	if r.err == "" && !IsInformationalStatus(s.Status) {
		r.fail(InvalidStatus)
	}
	s.Headers = r.headBlock(false)
	if k := r.finish(); k != "" {
		return nil, k
	}
	return s, ""
}
