package vyx

// Hijack on upgrade streams (hijack.go), against the scripted gateway: coder/websocket's
// Accept (WriteHeader(101), then Hijack) echoing a message, a handler that writes a raw 101
// head as gorilla/websocket does, half-closes both ways, and Hijack refused elsewhere.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// upgradeRequest is the REQUEST the gateway sends for a WebSocket handshake on GET /ws.
func upgradeRequest(c *gwtest.Conn, id uint32) *frame.Request {
	q := c.Request(id, "GET /ws", "/ws", false)
	q.Upgrade = true
	q.Headers = append(q.Headers,
		frame.Field{Name: "connection", Value: []byte("upgrade")},
		frame.Field{Name: "upgrade", Value: []byte("websocket")},
		frame.Field{Name: "sec-websocket-version", Value: []byte("13")},
		frame.Field{Name: "sec-websocket-key", Value: []byte("dGhlIHNhbXBsZSBub25jZQ==")})
	return q
}

// nextOn is the next DATA or RESPONSE of stream id (WINDOW skipped by Next).
func nextOn(t *testing.T, c *gwtest.Conn, id uint32) frame.Frame {
	t.Helper()
	f, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	switch f := f.(type) {
	case *frame.Data:
		if f.StreamID == id {
			return f
		}
	case *frame.Response:
		if f.StreamID == id {
			return f
		}
	}
	t.Fatalf("want a frame of stream %d, got %#v", id, f)
	return nil
}

// dataUntil reads DATA of stream id until it holds n bytes.
func dataUntil(t *testing.T, c *gwtest.Conn, id uint32, n int) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		d, ok := nextOn(t, c, id).(*frame.Data)
		if !ok || d.EndStream {
			t.Fatalf("want %d bytes of DATA, got %q then %#v", n, got, d)
		}
		got = append(got, d.Data...)
	}
	return got
}

// maskedText is a client's masked WebSocket text frame (RFC 6455 §5.3), as a browser sends.
func maskedText(payload string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
	for i := range len(payload) {
		b = append(b, payload[i]^key[i%4])
	}
	return b
}

func TestHijackServesCoderWebsocketAccept(t *testing.T) {
	g := gwtest.New(t)
	accepted := make(chan error, 1)
	startWorker(t, g, func(w *Worker) {
		w.HandleFunc("GET /ws", func(rw http.ResponseWriter, r *http.Request) {
			ws, err := websocket.Accept(rw, r, nil)
			accepted <- err
			if err != nil {
				return
			}
			ctx := context.Background()
			typ, msg, err := ws.Read(ctx)
			if err == nil {
				err = ws.Write(ctx, typ, append([]byte("echo: "), msg...))
			}
			if err != nil {
				t.Errorf("echo: %v", err)
			}
			_ = ws.CloseNow()
		})
	}, Config{})
	c := g.Accept()
	if !slices.Contains(c.Hello.Features, protocol.FeatureUpgrade) {
		t.Fatalf("HELLO offers %v, want upgrade", c.Hello.Features)
	}
	c.WelcomeGranting(0, protocol.FeatureUpgrade)
	c.Send(upgradeRequest(c, 1))
	head, ok := nextOn(t, c, 1).(*frame.Response)
	if !ok || head.Status != 101 || head.EndStream {
		t.Fatalf("want RESPONSE 101, got %#v", head)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if got := gwtest.Header(head, "sec-websocket-accept"); len(got) != 1 || got[0] != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("sec-websocket-accept %v", got)
	}
	if got := gwtest.Header(head, "upgrade"); len(got) != 1 || got[0] != "websocket" {
		t.Fatalf("a 101 keeps upgrade: %v", got)
	}
	c.Send(&frame.Data{StreamID: 1, Data: maskedText("hi")})
	if got := string(dataUntil(t, c, 1, 10)); got != "\x81\x08echo: hi" {
		t.Fatalf("echo frame %q", got)
	}
}

func TestHijackParsesARawHeadAndHalfClosesBothWays(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.HandleFunc("GET /ws", func(rw http.ResponseWriter, r *http.Request) {
			conn, brw, err := rw.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			// gorilla/websocket's style: the head written raw, in pieces, with bytes after it.
			_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
			_, _ = io.WriteString(conn, "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nhello")
			go func() {
				defer conn.Close()
				line, err := brw.ReadString('\n')
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				_, _ = io.WriteString(conn, "got "+line)
				if _, err := brw.ReadByte(); !errors.Is(err, io.EOF) {
					t.Errorf("after the client's half-close: %v, want EOF", err)
				}
				_ = conn.(interface{ CloseWrite() error }).CloseWrite()
			}()
		})
	}, Config{})
	c := g.Accept()
	c.WelcomeGranting(0, protocol.FeatureUpgrade)
	c.Send(upgradeRequest(c, 1))
	head, ok := nextOn(t, c, 1).(*frame.Response)
	if !ok || head.Status != 101 || len(gwtest.Header(head, "connection")) != 0 {
		t.Fatalf("want RESPONSE 101 without connection, got %#v", head)
	}
	if got := string(dataUntil(t, c, 1, 5)); got != "hello" {
		t.Fatalf("bytes after the raw head: %q", got)
	}
	c.Send(&frame.Data{StreamID: 1, Data: []byte("ping\n")})
	if got := string(dataUntil(t, c, 1, 9)); got != "got ping\n" {
		t.Fatalf("answer %q", got)
	}
	c.Send(&frame.Data{StreamID: 1, EndStream: true})
	if d, ok := nextOn(t, c, 1).(*frame.Data); !ok || !d.EndStream || len(d.Data) != 0 {
		t.Fatalf("want the worker's END_STREAM, got %#v", d)
	}
}

func TestHijackIsRefusedOnAPlainRequest(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.HandleFunc("GET /ws", func(rw http.ResponseWriter, r *http.Request) {
			_, _, err := http.NewResponseController(rw).Hijack()
			if !errors.Is(err, ErrNotUpgrade) {
				t.Errorf("Hijack: %v, want ErrNotUpgrade", err)
			}
			rw.WriteHeader(http.StatusSwitchingProtocols) // ignored: not an upgrade
			_, _ = io.WriteString(rw, "plain")
		})
	}, Config{})
	c := g.Accept()
	c.WelcomeGranting(0, protocol.FeatureUpgrade)
	c.Send(c.Request(1, "GET /ws", "/ws", true))
	r, body := c.Answer(1)
	if r.Status != 200 || string(body) != "plain" {
		t.Fatalf("%d %q", r.Status, body)
	}
}
