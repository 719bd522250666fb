package vyx

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A DATA frame alone in the queue leaves in corkLimit pieces, not in coder/websocket's
// 4 KiB ones: 1 MiB took 256 writes to the socket.
func TestALoneLargeMessageLeavesInFewWrites(t *testing.T) {
	const size = 1 << 20
	got := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(2 * size)
		_, msg, err := c.Read(r.Context())
		if err == nil {
			got <- len(msg)
		}
		_, _, _ = c.Read(r.Context()) // until the client goes
	}))
	defer srv.Close()

	var under *countingConn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, raw := dialThrough(t, ctx, srv, func(c net.Conn) *corkConn {
		under = &countingConn{Conn: c}
		return &corkConn{Conn: under}
	})
	before := under.writes.Load()

	w := newWriter(ws, raw)
	w.stream(1, make([]byte, size))
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("the peer read %d bytes, want %d", n, size)
		}
	case <-ctx.Done():
		t.Fatal("the message never arrived")
	}
	writes := under.writes.Load() - before
	t.Logf("%d writes to the socket for one 1 MiB message", writes)
	if most := int64(size/corkLimit + 1); writes > most {
		t.Fatalf("%d writes to the socket for one 1 MiB message, want at most %d", writes, most)
	}
}

// A body write copies each byte once, into its DATA frame: the payload was copied once
// more before being encoded.
func TestABodyWriteCopiesEachByteOnce(t *testing.T) {
	c := &connection{out: &writer{wake: make(chan struct{}, 1), data: map[uint32][][]byte{}}}
	s := &stream{id: 1, c: c, ctx: context.Background(), headSent: true}
	s.send = *protocol.NewSendWindow(1 << 30)
	body := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.write(body, false); err != nil {
			t.Fatal(err)
		}
		c.out.data[1], c.out.ring = c.out.data[1][:0], c.out.ring[:0]
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per 64 KiB write, want 1 (the frame)", allocs)
	}
}

// A whole small response is queued with its head: the writer takes the RESPONSE knowing
// its DATA is behind it (corked, one write), never the RESPONSE alone.
func TestAWholeSmallResponseIsQueuedWithItsHead(t *testing.T) {
	c := &connection{out: &writer{wake: make(chan struct{}, 1), data: map[uint32][][]byte{}}, streams: map[uint32]*stream{}, welcome: &frame.Welcome{}}
	s := &stream{id: 1, c: c, ctx: context.Background()}
	s.send = *protocol.NewSendWindow(1 << 16)
	c.streams[1] = s
	if wanted, err := s.sendHead(200, http.Header{}, []byte("hello"), false); err != nil || wanted {
		t.Fatalf("sendHead: wanted %v, %v", wanted, err)
	}
	head, more, _ := c.out.next()
	if head == nil || !more {
		t.Fatalf("the head alone in the queue (more %v)", more)
	}
	data, more, _ := c.out.next()
	if data == nil || more {
		t.Fatalf("no DATA behind the head, or more than it")
	}
}

// dialThrough dials srv's WebSocket with the socket under it wrapped by wrap (the corkConn
// the writer writes through); the WebSocket is closed when the test ends.
func dialThrough(t *testing.T, ctx context.Context, srv *httptest.Server, wrap func(net.Conn) *corkConn) (*websocket.Conn, *corkConn) {
	t.Helper()
	var raw *corkConn
	var nd net.Dialer
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			raw = wrap(c)
			return raw, nil
		},
	}}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws, raw
}
