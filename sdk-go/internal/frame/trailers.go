package frame

// Trailers is a TRAILERS frame (§3.10), both directions, extension "trailers": the trailer
// fields of a request or response. It ends the sender's direction, so it has no flags.
type Trailers struct {
	StreamID uint32
	Headers  []Field
}

// Type returns TypeTrailers.
func (*Trailers) Type() byte { return TypeTrailers }

// Encode returns the whole message (fields unchecked; see IsHeaderName, IsHeaderValue).
func (s *Trailers) Encode() []byte {
	b := header(TypeTrailers, false, s.StreamID, headLen(s.Headers))
	return putHeadBlock(b, s.Headers)
}

// PayloadLen is the payload's length, the size MaxTrailersSize bounds.
func (s *Trailers) PayloadLen() int { return headLen(s.Headers) }

func decodeTrailers(sid uint32, p []byte) (Frame, Kind) {
	r := newReader(p)
	s := &Trailers{StreamID: sid}
	s.Headers = r.headBlock(false)
	if k := r.finish(); k != "" {
		return nil, k
	}
	return s, ""
}
