package vyx

// The socket's own framing of binary messages (core/src/transport/wire.rs).
//
// coder/websocket writes a client's message in two passes over its payload (masked into its
// 4 KiB write buffer, then copied into the cork buffer). On a plain ws:// socket the writer
// frames binary messages itself: the header goes into the cork buffer and the payload is
// copied and masked into it in one pass (bench/NOTES.md, "The worker's passes per body
// byte"). The library keeps the handshake, reading, pings, pongs and the closing handshake;
// its frames reach the same buffer whole (it flushes each control frame in one write), so its
// frames and the writer's never interleave mid-frame. Under TLS the records are built above
// this socket, so the library frames everything there.

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// maxHeader is the longest header of a masked frame: 2 bytes, an 8-byte length, a 4-byte mask.
const maxHeader = 14

// maskedBinaryHeader writes the header of a final, masked binary frame of n payload bytes
// into h and returns its length.
func maskedBinaryHeader(h *[maxHeader]byte, n int, key uint32) int {
	h[0] = 0x80 | 0x2 // FIN, binary
	var at int
	switch {
	case n < 126:
		h[1] = 0x80 | byte(n)
		at = 2
	case n <= 0xFFFF:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		at = 4
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		at = 10
	}
	binary.LittleEndian.PutUint32(h[at:], key)
	return at + 4
}

// maskInto writes src XOR the mask into dst (len(dst) >= len(src)), src starting at byte
// pos of the payload: one pass, eight bytes a step.
func maskInto(dst, src []byte, key uint32, pos int) {
	// The key as the payload's byte pos sees it, in little-endian words.
	k32 := bits.RotateLeft32(key, -8*(pos&3))
	k64 := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^k64)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ byte(k64>>(8*(i&7)))
	}
}

// writeBinary frames msg as one masked binary message into the cork buffer, copying and
// masking its payload in one pass, and writes the buffer out unless more is queued behind
// (then the socket stays corked, and the library's writes meanwhile queue behind it).
func (c *corkConn) writeBinary(msg []byte, more bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// RFC 6455 §5.3: a fresh, unpredictable key per frame; math/rand/v2's generator is
	// ChaCha8, seeded from the system.
	key := rand.Uint32()
	var h [maxHeader]byte
	n := maskedBinaryHeader(&h, len(msg), key)
	if len(c.buf)+n > corkLimit {
		if err := c.flushLocked(); err != nil {
			return err
		}
	}
	c.buf = append(c.buf, h[:n]...)
	for pos := 0; pos < len(msg); {
		room := corkLimit - len(c.buf)
		if room <= 0 {
			if err := c.flushLocked(); err != nil {
				return err
			}
			room = corkLimit
		}
		chunk := min(room, len(msg)-pos)
		at := len(c.buf)
		c.buf = slices.Grow(c.buf, chunk)[:at+chunk] // no zeroing: maskInto writes it all
		maskInto(c.buf[at:], msg[pos:pos+chunk], key, pos)
		pos += chunk
	}
	c.corked = more
	if more {
		return nil
	}
	return c.flushLocked()
}
