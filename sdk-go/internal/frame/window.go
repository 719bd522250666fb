package frame

import "encoding/binary"

// MaxWindow is the largest window and WINDOW increment, 2^31−1 (§3.7, §5).
const MaxWindow = 1<<31 - 1

// Window is a WINDOW frame (§3.7): flow-control credit for one stream.
type Window struct {
	StreamID  uint32
	Increment uint32 // 1..=MaxWindow
}

// Type returns TypeWindow.
func (*Window) Type() byte { return TypeWindow }

// Encode returns the whole message.
func (w *Window) Encode() []byte {
	return binary.BigEndian.AppendUint32(header(TypeWindow, false, w.StreamID, 4), w.Increment)
}

func decodeWindow(sid uint32, p []byte) (Frame, Kind) {
	if len(p) < 4 {
		return nil, TruncatedPayload
	}
	if len(p) > 4 {
		return nil, TrailingBytes
	}
	inc := binary.BigEndian.Uint32(p)
	if inc == 0 || inc > MaxWindow {
		return nil, InvalidWindowIncrement
	}
	return &Window{StreamID: sid, Increment: inc}, ""
}
