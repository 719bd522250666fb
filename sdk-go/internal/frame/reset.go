package frame

import (
	"encoding/binary"
	"unicode/utf8"
)

// Reset is a RESET frame (§3.6): the sender abandons the stream.
type Reset struct {
	StreamID uint32
	Code     ResetCode
	Reason   string // valid UTF-8, may be empty
}

// Type returns TypeReset.
func (*Reset) Type() byte { return TypeReset }

// Encode returns the whole message.
func (x *Reset) Encode() []byte {
	b := header(TypeReset, false, x.StreamID, 4+len(x.Reason))
	b = binary.BigEndian.AppendUint32(b, uint32(x.Code))
	return append(b, x.Reason...)
}

func decodeReset(sid uint32, p []byte) (Frame, Kind) {
	if len(p) < 4 {
		return nil, TruncatedPayload
	}
	if !utf8.Valid(p[4:]) {
		return nil, InvalidResetReason
	}
	return &Reset{StreamID: sid, Code: ResetCode(binary.BigEndian.Uint32(p)), Reason: string(p[4:])}, ""
}
