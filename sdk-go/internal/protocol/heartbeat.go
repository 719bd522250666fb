package protocol

// The heartbeat's count of silent intervals (core/src/heartbeat.rs, §7).

// Heartbeat counts the peer's silence in ticks of this side's ping timer (§7): at each tick
// it notes whether anything arrived since the previous one, and the peer is dead after
// HeartbeatMisses consecutive silent ticks. A stall of this side is one interval however
// long, as long as the ticker drops missed ticks (a time.Ticker does) and the socket's
// backlog is read before the next tick is counted.
//
//	hb := protocol.Heartbeat{}
//	// on every frame, ping or pong: hb.Received()
//	// on every ticker tick: if hb.Tick() { close 4009 } else { ping }
type Heartbeat struct {
	heard  bool
	silent uint32
}

// Received records that something arrived from the peer (a frame, a ping, a pong).
func (h *Heartbeat) Received() { h.heard = true }

// Tick counts one interval and reports whether the peer is now dead (close 4009).
func (h *Heartbeat) Tick() (dead bool) {
	if h.heard {
		h.silent = 0
	} else {
		h.silent++
	}
	h.heard = false
	return h.silent >= HeartbeatMisses
}

// SilentTicks is the number of consecutive ticks with nothing heard.
func (h *Heartbeat) SilentTicks() uint32 { return h.silent }
