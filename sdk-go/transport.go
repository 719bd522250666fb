package vyx

import (
	"context"
	"net"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// writer is the single goroutine that writes a connection's messages (write_loop of
// core/src/transport.rs), fair as §5 asks: every frame that is not DATA goes ahead of queued
// DATA, and DATA of different streams goes round-robin, one frame per stream per turn, so a
// small answer never waits behind another stream's megabytes. Frames of one stream keep
// their order. The close goes after everything queued before it.
type writer struct {
	ws   *websocket.Conn
	tcp  *corkConn // the socket under ws, nil when unknown (tests)
	wake chan struct{}
	done chan struct{}

	mu      sync.Mutex
	ctrl    [][]byte
	data    map[uint32][][]byte
	ring    []uint32 // streams with queued DATA, in turn order
	closing bool
	code    websocket.StatusCode
	reason  string
	dead    bool
}

func newWriter(ws *websocket.Conn, tcp *corkConn) *writer {
	w := &writer{ws: ws, tcp: tcp, wake: make(chan struct{}, 1), done: make(chan struct{}), data: map[uint32][][]byte{}}
	go w.loop()
	return w
}

func (w *writer) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// control queues a frame that is not DATA (or a RESET that need not follow its DATA).
func (w *writer) control(msg []byte) {
	w.mu.Lock()
	if !w.closing && !w.dead {
		w.ctrl = append(w.ctrl, msg)
	}
	w.mu.Unlock()
	w.notify()
}

// stream queues a frame behind the earlier DATA of stream id (DATA, or the RESET no_error
// that must follow a complete response).
func (w *writer) stream(id uint32, msg []byte) {
	w.mu.Lock()
	if !w.closing && !w.dead {
		q, queued := w.data[id]
		if !queued {
			w.ring = append(w.ring, id)
		}
		w.data[id] = append(q, msg)
	}
	w.mu.Unlock()
	w.notify()
}

// reset queues a RESET for stream id and drops its DATA still queued: the peer would
// ignore it (§5 allows this for every code but no_error, which goes through stream).
func (w *writer) reset(id uint32, msg []byte) {
	w.mu.Lock()
	if _, queued := w.data[id]; queued {
		delete(w.data, id)
		for i, s := range w.ring {
			if s == id {
				w.ring = append(w.ring[:i], w.ring[i+1:]...)
				break
			}
		}
	}
	w.mu.Unlock()
	w.control(msg)
}

// close queues the close frame (the first close wins) and returns at once.
func (w *writer) close(code frame.CloseCode, reason string) {
	w.mu.Lock()
	if !w.closing {
		w.closing, w.code, w.reason = true, websocket.StatusCode(code), truncateReason(reason)
	}
	w.mu.Unlock()
	w.notify()
}

// next takes the next message to write; more says whether others are queued behind it.
func (w *writer) next() (msg []byte, more, closeNow bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { more = msg != nil && (len(w.ctrl) > 0 || len(w.ring) > 0) }()
	if len(w.ctrl) > 0 {
		msg, w.ctrl[0] = w.ctrl[0], nil
		w.ctrl = w.ctrl[1:]
		return msg, false, false
	}
	if len(w.ring) > 0 {
		id := w.ring[0]
		w.ring = w.ring[1:]
		q := w.data[id]
		msg, q[0] = q[0], nil
		if q = q[1:]; len(q) > 0 {
			w.data[id] = q
			w.ring = append(w.ring, id)
		} else {
			delete(w.data, id)
		}
		return msg, false, false
	}
	return nil, false, w.closing
}

func (w *writer) loop() {
	defer close(w.done)
	ctx := context.Background() // no deadline: a write that fails ends the connection
	for {
		msg, more, closeNow := w.next()
		switch {
		case msg != nil:
			// Messages queued together leave in one write to the socket (a RESPONSE and its
			// DATA, the answers of many streams), not one system call each.
			if w.tcp != nil {
				w.tcp.cork(more)
			}
			err := w.ws.Write(ctx, websocket.MessageBinary, msg)
			if err == nil && !more && w.tcp != nil {
				err = w.tcp.uncork()
			}
			if err != nil {
				w.mu.Lock()
				w.dead, w.ctrl, w.data, w.ring = true, nil, map[uint32][][]byte{}, nil
				w.mu.Unlock()
				_ = w.ws.CloseNow()
				return
			}
		case closeNow:
			if w.tcp != nil {
				_ = w.tcp.uncork()
			}
			// Close writes the close frame and waits (at most 5 s) for the peer's; after
			// the peer's own close it returns at once, the library having answered it.
			_ = w.ws.Close(w.code, w.reason)
			return
		default:
			if w.tcp != nil {
				_ = w.tcp.uncork() // what was queued behind went away (a RESET dropped it)
			}
			<-w.wake
		}
	}
}

// truncateReason cuts a close reason to the 123 bytes RFC 6455 allows, at a UTF-8
// boundary (core's truncate_reason).
func truncateReason(reason string) string {
	if len(reason) <= protocol.MaxCloseReasonLen {
		return reason
	}
	cut := protocol.MaxCloseReasonLen
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// corkLimit bounds what a corked socket holds before it writes anyway.
const corkLimit = 64 << 10

// corkConn is the TCP connection under the WebSocket. While corked, writes gather in a
// buffer (up to corkLimit) and leave together at uncork: the writer corks while more
// messages are queued behind the one it writes. Writes of other goroutines (pongs, the
// close) pass through in order.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && len(c.buf)+len(p) <= corkLimit {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *corkConn) cork(on bool) {
	c.mu.Lock()
	c.corked = on
	c.mu.Unlock()
}

// uncork writes what gathered.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}
