package protocol

import "github.com/vyx-dev/vyx/sdk-go/internal/frame"

// SendWindow is the credit of one stream direction on the side sending DATA (§5). It is
// plain accounting, not safe for concurrent use; the session guards it.
//
//	w := protocol.NewSendWindow(262144)
//	n := w.Reserve(len(body)) // send body[:n], wait for WINDOW if n < len(body)
type SendWindow struct{ avail int64 }

// NewSendWindow returns a window of initial bytes (WELCOME.initial_window).
func NewSendWindow(initial uint32) *SendWindow { return &SendWindow{avail: int64(initial)} }

// Available is the number of bytes that may be sent now.
func (w *SendWindow) Available() int64 { return w.avail }

// Reserve takes min(want, available) bytes of credit and returns it (0: wait for WINDOW).
func (w *SendWindow) Reserve(want int) int {
	n := min(int64(want), w.avail)
	if n < 0 {
		n = 0
	}
	w.avail -= n
	return int(n)
}

// Grant adds a WINDOW increment. It returns false when the window would exceed 2^31−1:
// the connection closes 4008 (the window is left unchanged).
func (w *SendWindow) Grant(increment uint32) bool {
	if w.avail+int64(increment) > frame.MaxWindow {
		return false
	}
	w.avail += int64(increment)
	return true
}

// WindowUpdateDue reports whether a receiver that has consumed unacked bytes since its last
// WINDOW sends one now: once they reach half the initial window (§5's SHOULD).
func WindowUpdateDue(unacked, initialWindow uint32) bool {
	return unacked > 0 && unacked >= initialWindow/2
}

// RecvWindow is the receiving side's accounting of one stream direction (§5): what the peer
// may still send, and what the application consumed but has not yet been granted back.
type RecvWindow struct {
	initial   uint32
	remaining int64
	unacked   uint32
	ended     bool
}

// NewRecvWindow returns the receive accounting for a window of initial bytes.
func NewRecvWindow(initial uint32) *RecvWindow {
	return &RecvWindow{initial: initial, remaining: int64(initial)}
}

// Remaining is how many DATA payload bytes the peer may still send.
func (w *RecvWindow) Remaining() int64 { return w.remaining }

// Data accounts a DATA of n payload bytes. It returns false when n exceeds the remaining
// window: the connection closes 4008.
func (w *RecvWindow) Data(n int, endStream bool) bool {
	if int64(n) > w.remaining {
		return false
	}
	w.remaining -= int64(n)
	if endStream {
		w.ended = true
	}
	return true
}

// Grant records a WINDOW of n sent apart from Consume: the one-byte ask for a body held
// behind expect: 100-continue (§5.1).
func (w *RecvWindow) Grant(n uint32) { w.remaining += int64(n) }

// Consume records that the application consumed n bytes and returns the WINDOW increment
// to send now (0: none). No WINDOW follows a received END_STREAM.
func (w *RecvWindow) Consume(n uint32) uint32 {
	if w.ended {
		return 0
	}
	w.unacked += n
	if !WindowUpdateDue(w.unacked, w.initial) {
		return 0
	}
	inc := w.unacked
	w.unacked = 0
	w.remaining += int64(inc)
	return inc
}
