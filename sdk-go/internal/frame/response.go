package frame

import "encoding/binary"

// Response is a RESPONSE frame (§3.5), worker → gateway: status and headers.
type Response struct {
	StreamID  uint32
	EndStream bool // the response has no body
	Status    uint16
	Headers   []Field
}

// Type returns TypeResponse.
func (*Response) Type() byte { return TypeResponse }

// Encode returns the whole message (fields unchecked; see IsHeaderName, IsHeaderValue).
func (s *Response) Encode() []byte {
	b := header(TypeResponse, s.EndStream, s.StreamID, 2+headLen(s.Headers))
	b = binary.BigEndian.AppendUint16(b, s.Status)
	return putHeadBlock(b, s.Headers)
}

func decodeResponse(sid uint32, end bool, p []byte) (Frame, Kind) {
	r := newReader(p)
	s := &Response{StreamID: sid, EndStream: end}
	s.Status = r.u16()
	// Whether a 101 answers an UPGRADE stream is the session's rule (§4.5).
	if r.err == "" && s.Status != 101 && (s.Status < 200 || s.Status > 599) {
		r.fail(InvalidStatus)
	}
	s.Headers = r.headBlock(false)
	if k := r.finish(); k != "" {
		return nil, k
	}
	return s, ""
}
