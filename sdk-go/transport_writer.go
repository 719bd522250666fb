package vyx

// The writer (core/src/transport/writer.rs): the goroutine that owns the socket's writes
// and empties the connection's queue, corking the TCP socket while more is queued.

import (
	"context"
	"net"
	"sync"

	"github.com/coder/websocket"
)

func (w *writer) loop() {
	defer close(w.done)
	ctx := context.Background() // no deadline: a write that fails ends the connection
	for {
		msg, more, closeNow := w.next()
		switch {
		case msg != nil:
			// Messages queued together leave in one write to the socket (a RESPONSE and its
			// DATA, the answers of many streams), not one system call each; and a large
			// message alone leaves in corkLimit pieces, not in the library's 4 KiB ones (a
			// 1 MiB DATA frame took 256 writes).
			var err error
			if w.tcp != nil && w.tcp.plain {
				err = w.tcp.writeBinary(msg, more) // one pass per payload byte (transport_wire.go)
			} else {
				if w.tcp != nil {
					w.tcp.cork(more || len(msg) > libraryWriteBuffer)
				}
				err = w.ws.Write(ctx, websocket.MessageBinary, msg)
				if err == nil && !more && w.tcp != nil {
					err = w.tcp.uncork()
				}
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

// libraryWriteBuffer is coder/websocket's write buffer: a message that fits leaves in one
// write without corking.
const libraryWriteBuffer = 4096

// corkLimit bounds what a corked socket holds before it writes anyway.
const corkLimit = 64 << 10

// corkConn is the TCP connection under the WebSocket. While corked, writes gather in a
// buffer (up to corkLimit) and leave together at uncork: the writer corks while more
// messages are queued behind the one it writes. Writes of other goroutines (pongs, the
// close) pass through in order.
type corkConn struct {
	net.Conn
	// plain: the WebSocket runs straight on this socket (ws://, no TLS above it), so the
	// writer may frame its binary messages here itself (writeBinary).
	plain  bool
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && len(c.buf)+len(p) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	if c.corked && len(p) <= corkLimit {
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
