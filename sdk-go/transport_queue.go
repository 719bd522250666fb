package vyx

// The send queue (core/src/transport/queue.rs): a connection's frames not yet written, in
// the writer's fair order.

import (
	"sync"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// writer is the single goroutine that writes a connection's messages (OutQueue and
// write_loop of core/src/transport/; its loop is in transport_writer.go), fair as §5 asks:
// every frame that is not DATA goes ahead of queued DATA, and DATA of different streams
// goes round-robin, one frame per stream per turn, so a small answer never waits behind
// another stream's megabytes. Frames of one stream keep their order. The close goes after
// everything queued before it.
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

// stream queues a frame behind the earlier DATA of stream id (DATA, the RESET no_error
// that must follow a complete response, or a handler_error one that follows its body).
func (w *writer) stream(id uint32, msg []byte) {
	w.mu.Lock()
	if !w.closing && !w.dead {
		w.queueStreamLocked(id, msg)
	}
	w.mu.Unlock()
	w.notify()
}

func (w *writer) queueStreamLocked(id uint32, msg []byte) {
	q, queued := w.data[id]
	if !queued {
		w.ring = append(w.ring, id)
	}
	w.data[id] = append(q, msg)
}

// headAndData queues a RESPONSE and its stream's DATA under one lock, so that the writer
// finds both queued and writes them together.
func (w *writer) headAndData(head []byte, id uint32, data []byte) {
	w.mu.Lock()
	if !w.closing && !w.dead {
		w.ctrl = append(w.ctrl, head)
		w.queueStreamLocked(id, data)
	}
	w.mu.Unlock()
	w.notify()
}

// reset queues a RESET for stream id and drops its DATA still queued: the peer would
// ignore it (§5 allows this for every code but no_error and handler_error, which go
// through stream).
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
