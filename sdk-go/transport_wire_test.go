package vyx

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// readMaskedBinary parses one frame as RFC 6455 §5.2 lays it out and unmasks its payload.
func readMaskedBinary(t *testing.T, b []byte) (payload, rest []byte) {
	t.Helper()
	if b[0] != 0x82 || b[1]&0x80 == 0 {
		t.Fatalf("not a final masked binary frame: % x", b[:2])
	}
	n, at := uint64(b[1]&0x7F), 2
	switch n {
	case 126:
		n, at = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, at = binary.BigEndian.Uint64(b[2:]), 10
	}
	key := b[at : at+4]
	at += 4
	payload = make([]byte, n)
	for i := range payload {
		payload[i] = b[at+i] ^ key[i%4]
	}
	return payload, b[at+int(n):]
}

// Each length form (7-bit, 16-bit, 64-bit) at its edges, and payloads larger than the cork
// buffer (masked across its flushes, at every offset of the key), decode to what was sent.
func TestFramesWrittenHereDecodeAsSent(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 125, 126, 127, 0xFFFF, 0x10000, corkLimit - 3, corkLimit + 5, 3*corkLimit + 1} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i*7 + i>>8)
		}
		var wire bytes.Buffer
		c := &corkConn{Conn: &bufConn{w: &wire}, plain: true}
		if err := c.writeBinary(msg, false); err != nil {
			t.Fatal(err)
		}
		got, rest := readMaskedBinary(t, wire.Bytes())
		if !bytes.Equal(got, msg) || len(rest) != 0 {
			t.Fatalf("%d bytes: decoded %d bytes (equal %v), %d left over", n, len(got), bytes.Equal(got, msg), len(rest))
		}
	}
}

// Corked messages stay in the buffer and leave together, after one another, with the
// library's own writes (a pong) between them in order.
func TestCorkedFramesLeaveTogetherInOrder(t *testing.T) {
	var wire bytes.Buffer
	conn := &bufConn{w: &wire}
	c := &corkConn{Conn: conn, plain: true}
	if err := c.writeBinary([]byte("first"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{0x8A, 0x80, 0, 0, 0, 0}); err != nil { // a pong, as the library writes it
		t.Fatal(err)
	}
	if conn.writes != 0 {
		t.Fatalf("%d writes while corked", conn.writes)
	}
	if err := c.writeBinary([]byte("second"), false); err != nil {
		t.Fatal(err)
	}
	if conn.writes != 1 {
		t.Fatalf("%d writes, want the three frames in one", conn.writes)
	}
	first, rest := readMaskedBinary(t, wire.Bytes())
	if !bytes.Equal(rest[:6], []byte{0x8A, 0x80, 0, 0, 0, 0}) {
		t.Fatalf("the pong is not next: % x", rest[:6])
	}
	second, rest := readMaskedBinary(t, rest[6:])
	if string(first) != "first" || string(second) != "second" || len(rest) != 0 {
		t.Fatalf("%q, %q, %d left", first, second, len(rest))
	}
}

// The masking key differs from frame to frame (RFC 6455 §5.3).
func TestEachFrameHasItsOwnKey(t *testing.T) {
	keys := map[string]bool{}
	for range 64 {
		var wire bytes.Buffer
		c := &corkConn{Conn: &bufConn{w: &wire}, plain: true}
		if err := c.writeBinary([]byte("x"), false); err != nil {
			t.Fatal(err)
		}
		keys[string(wire.Bytes()[2:6])] = true
	}
	if len(keys) < 60 {
		t.Fatalf("%d distinct keys in 64 frames", len(keys))
	}
}

// Through a real WebSocket server (coder/websocket's own reader checks the framing):
// messages of every size arrive whole and in order, while the server's pings are answered
// by the library on the same socket.
func TestTheWritersFramesReachAWebSocketServer(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 4096, 0xFFFF, 0x10000, 1 << 20, 3}
	got := make(chan []byte, len(sizes))
	pings := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(2 << 20)
		go func() {
			var err error
			for range 20 {
				if err = c.Ping(r.Context()); err != nil {
					break
				}
			}
			pings <- err
		}()
		for {
			_, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			got <- msg
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, raw := dialThrough(t, ctx, srv, func(c net.Conn) *corkConn { return &corkConn{Conn: c, plain: true} })
	ws.CloseRead(ctx) // the client reads in the background: the library answers pings

	w := newWriter(ws, raw)
	for i, n := range sizes {
		w.stream(1, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	for i, n := range sizes {
		select {
		case msg := <-got:
			if !bytes.Equal(msg, bytes.Repeat([]byte{byte(i + 1)}, n)) {
				t.Fatalf("message %d: %d bytes, want %d of %d", i, len(msg), n, i+1)
			}
		case <-ctx.Done():
			t.Fatalf("message %d never arrived", i)
		}
	}
	select {
	case err := <-pings:
		if err != nil {
			t.Fatalf("a ping went unanswered: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the pings never finished")
	}
}

// bufConn is a net.Conn whose writes go to a buffer, counted.
type bufConn struct {
	net.Conn
	w      *bytes.Buffer
	writes int
}

func (c *bufConn) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}
