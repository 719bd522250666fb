package frame

import "encoding/binary"

// Request is a REQUEST frame (§3.4), gateway → worker: the head of a new stream.
type Request struct {
	StreamID  uint32
	EndStream bool // the request has no body
	Upgrade   bool // flag UPGRADE: the client asked to switch protocols (§4.5)
	RouteID   uint16
	Method    string
	Target    string // origin-form, raw (path + optional ?query)
	Params    []Field
	Headers   []Field
}

// Type returns TypeRequest.
func (*Request) Type() byte { return TypeRequest }

// Encode returns the whole message. It does not validate the fields: a caller that builds
// a Request from untrusted input checks it with IsMethod, IsTarget, IsHeaderName, ... first.
func (q *Request) Encode() []byte {
	n := 2 + 4 + len(q.Method) + len(q.Target) + headLen(q.Params) + headLen(q.Headers)
	b := header(TypeRequest, q.EndStream, q.StreamID, n)
	if q.Upgrade {
		b[1] |= FlagUpgrade
	}
	b = binary.BigEndian.AppendUint16(b, q.RouteID)
	b = putStr16(b, []byte(q.Method))
	b = putStr16(b, []byte(q.Target))
	b = putHeadBlock(b, q.Params)
	return putHeadBlock(b, q.Headers)
}

func decodeRequest(sid uint32, end, upgrade bool, p []byte) (Frame, Kind) {
	r := newReader(p)
	q := &Request{StreamID: sid, EndStream: end, Upgrade: upgrade}
	q.RouteID = r.u16()
	q.Method = r.str16()
	if r.err == "" && !IsMethod(q.Method) {
		r.fail(InvalidMethod)
	}
	q.Target = r.str16()
	if r.err == "" && !IsTarget(q.Target) {
		r.fail(InvalidTarget)
	}
	q.Params = r.headBlock(true)
	q.Headers = r.headBlock(false)
	if k := r.finish(); k != "" {
		return nil, k
	}
	return q, ""
}
