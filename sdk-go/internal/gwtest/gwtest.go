// Package gwtest is a scripted vyx gateway for the Go SDK's tests: a WebSocket server on
// 127.0.0.1 that speaks vyx.1 one move at a time, as the conformance runner's worker
// probes do.
package gwtest

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// Wait bounds every wait of the session tests (generous: a busy 2-core machine).
const Wait = 10 * time.Second

// Message is one WebSocket message from the worker, or the read error that ended them.
type Message struct {
	Type websocket.MessageType
	B    []byte
	Err  error
}

// Conn is one accepted worker connection.
type Conn struct {
	t testing.TB
	// WS is the gateway's side of the WebSocket.
	WS *websocket.Conn
	// Req is the worker's upgrade request.
	Req *http.Request
	// Hello is the worker's HELLO, read by Accept.
	Hello *frame.Hello
	// Msgs delivers the worker's messages as they arrive.
	Msgs chan Message
	done chan struct{}
}

// Gateway accepts upgrades; Answer (when set) may refuse one instead (HTTP status).
type Gateway struct {
	t     testing.TB
	srv   *httptest.Server
	conns chan *Conn
	// Answer decides each upgrade: nil → accept with vyx.1.
	Answer   func(attempt int, w http.ResponseWriter, r *http.Request) (accept bool, subprotocol bool)
	mu       sync.Mutex
	attempts int
}

func New(t testing.TB) *Gateway {
	g := &Gateway{t: t, conns: make(chan *Conn, 16)}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

// NewTLS is New over TLS (wss://), with httptest's certificate for 127.0.0.1.
func NewTLS(t testing.TB) *Gateway {
	g := &Gateway{t: t, conns: make(chan *Conn, 16)}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	g.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes of a test
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	return g
}

// CertificatePEM is the TLS gateway's certificate as PEM, for a CA file.
func (g *Gateway) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.srv.Certificate().Raw})
}

// URL is the gateway's address as a worker is configured with it (no path).
func (g *Gateway) URL() string {
	if strings.HasPrefix(g.srv.URL, "https://") {
		return "wss://" + strings.TrimPrefix(g.srv.URL, "https://")
	}
	return "ws://" + strings.TrimPrefix(g.srv.URL, "http://")
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.attempts++
	attempt := g.attempts
	g.mu.Unlock()
	accept, sub := true, true
	if g.Answer != nil {
		accept, sub = g.Answer(attempt, w, r)
	}
	if !accept {
		return
	}
	opts := &websocket.AcceptOptions{}
	if sub {
		opts.Subprotocols = []string{"vyx.1"}
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	c := &Conn{t: g.t, WS: ws, Req: r, Msgs: make(chan Message, 64), done: make(chan struct{})}
	go func() {
		defer close(c.Msgs)
		for {
			typ, b, err := ws.Read(context.Background())
			c.Msgs <- Message{typ, b, err}
			if err != nil {
				return
			}
		}
	}()
	g.conns <- c
	<-c.done
}

// Accept waits for the next connection and reads its HELLO.
func (g *Gateway) Accept() *Conn {
	g.t.Helper()
	select {
	case c := <-g.conns:
		g.t.Cleanup(func() { close(c.done); _ = c.WS.CloseNow() })
		m := c.Read()
		if m.Err != nil {
			g.t.Fatalf("no HELLO: %v", m.Err)
		}
		f, err := frame.Decode(m.B, frame.MaxFrameSize)
		if err != nil {
			g.t.Fatalf("first frame: %v", err)
		}
		h, ok := f.(*frame.Hello)
		if !ok {
			g.t.Fatalf("first frame is %s, not HELLO", frame.TypeName(f.Type()))
		}
		c.Hello = h
		return c
	case <-time.After(Wait):
		g.t.Fatal("no connection from the worker")
	}
	return nil
}

// NoAttempt checks that no further upgrade comes within d.
func (g *Gateway) NoAttempt(d time.Duration) {
	g.t.Helper()
	select {
	case <-g.conns:
		g.t.Fatal("the worker connected again")
	case <-time.After(d):
	}
}

func (g *Gateway) Attempts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.attempts
}

// Read returns the next message (pings and pongs never surface: the library answers them).
func (c *Conn) Read() Message {
	select {
	case m, ok := <-c.Msgs:
		if !ok {
			return Message{Err: io.EOF}
		}
		return m
	case <-time.After(Wait):
		return Message{Err: errors.New("nothing from the worker in time")}
	}
}

// Welcome sends a WELCOME with the defaults of spec/vectors/README.md and overrides.
func (c *Conn) Welcome(initialWindow uint64) { c.WelcomeGranting(initialWindow) }

// WelcomeGranting is Welcome granting the named extensions (§2.6).
func (c *Conn) WelcomeGranting(initialWindow uint64, features ...string) {
	if initialWindow == 0 {
		initialWindow = 262144
	}
	c.Send(&frame.Welcome{Protocol: 1, Gateway: "fake/0", ConnectionID: "c1", HeartbeatMS: 10000,
		InitialWindow: initialWindow, MaxFrameSize: frame.MaxFrameSize, MaxConcurrency: c.Hello.MaxConcurrency,
		Connections: 1, Features: features})
}

// WelcomeFeatures is Welcome granting the protocol extensions features (§2.6).
func (c *Conn) WelcomeFeatures(initialWindow uint64, features ...string) {
	c.Send(&frame.Welcome{Protocol: 1, Gateway: "fake/0", ConnectionID: "c1", HeartbeatMS: 10000,
		InitialWindow: max(initialWindow, 1), MaxFrameSize: frame.MaxFrameSize, MaxConcurrency: c.Hello.MaxConcurrency,
		Connections: 1, Features: features})
}

// WelcomeAsking is Welcome asking the worker to hold connections to this address (§9.1).
func (c *Conn) WelcomeAsking(connections uint64) {
	c.Send(&frame.Welcome{Protocol: 1, Gateway: "fake/0", ConnectionID: "c1", HeartbeatMS: 10000,
		InitialWindow: 262144, MaxFrameSize: frame.MaxFrameSize, MaxConcurrency: c.Hello.MaxConcurrency,
		Connections: connections})
}

func (c *Conn) Send(f frame.Frame) { c.SendRaw(websocket.MessageBinary, f.Encode()) }

func (c *Conn) SendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.WS.Write(context.Background(), typ, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// Next is the worker's next frame, its WINDOW frames skipped.
func (c *Conn) Next() (frame.Frame, error) {
	for {
		m := c.Read()
		if m.Err != nil {
			return nil, m.Err
		}
		f, err := frame.Decode(m.B, frame.MaxFrameSize)
		if err != nil {
			return nil, fmt.Errorf("the worker sent an undecodable frame: %v", err)
		}
		if f.Type() != frame.TypeWindow {
			return f, nil
		}
	}
}

// CloseCode waits for the worker's close and returns its code.
func (c *Conn) CloseCode() int {
	for {
		m := c.Read()
		if m.Err != nil {
			var ce websocket.CloseError
			if errors.As(m.Err, &ce) {
				return int(ce.Code)
			}
			return -1
		}
	}
}

// Request builds a REQUEST for route ("METHOD /pattern" of the HELLO).
func (c *Conn) Request(id uint32, route, target string, end bool, params ...string) *frame.Request {
	c.t.Helper()
	routeID := uint64(65535)
	if route != "unknown" {
		found := false
		for _, r := range c.Hello.Routes {
			if r.Method+" "+r.Path == route {
				routeID, found = r.ID, true
			}
		}
		if !found {
			c.t.Fatalf("the worker declares no route %q", route)
		}
	}
	q := &frame.Request{StreamID: id, EndStream: end, RouteID: uint16(routeID), Method: strings.Fields(route)[0], Target: target,
		Headers: []frame.Field{{Name: "host", Value: []byte("conformance.test")}}}
	if route == "unknown" {
		q.Method = "GET"
	}
	for i := 0; i+1 < len(params); i += 2 {
		q.Params = append(q.Params, frame.Field{Name: params[i], Value: []byte(params[i+1])})
	}
	return q
}

// Answer reads one whole response of stream id: status, headers, body.
func (c *Conn) Answer(id uint32) (*frame.Response, []byte) {
	c.t.Helper()
	f, err := c.Next()
	r, ok := f.(*frame.Response)
	if err != nil || !ok || r.StreamID != id {
		c.t.Fatalf("want RESPONSE on %d, got %#v (%v)", id, f, err)
	}
	var body []byte
	for end := r.EndStream; !end; {
		f, err := c.Next()
		d, ok := f.(*frame.Data)
		if err != nil || !ok || d.StreamID != id {
			c.t.Fatalf("want DATA on %d, got %#v (%v)", id, f, err)
		}
		body, end = append(body, d.Data...), d.EndStream
	}
	return r, body
}

// Header lists the values of header name in r, in order.
func Header(r *frame.Response, name string) []string {
	var out []string
	for _, f := range r.Headers {
		if f.Name == name {
			out = append(out, string(f.Value))
		}
	}
	return out
}

// Forwarded is the REQUEST a gateway sends for GET target (headers as the vyx gateway adds them).
func (c *Conn) Forwarded(id uint32, route, target string, params ...string) *frame.Request {
	q := c.Request(id, route, target, true, params...)
	q.Method = "GET"
	q.Headers = []frame.Field{{Name: "host", Value: []byte("api.example:8080")},
		{Name: "x-multi", Value: []byte("1")}, {Name: "x-multi", Value: []byte("2")},
		{Name: "x-forwarded-for", Value: []byte("203.0.113.9, 198.51.100.7")},
		{Name: "forwarded", Value: []byte(`for=198.51.100.7;proto=http;host="api.example:8080"`)}}
	return q
}

// NextAny is Next without skipping WINDOW frames.
func (c *Conn) NextAny() (frame.Frame, error) {
	m := c.Read()
	if m.Err != nil {
		return nil, m.Err
	}
	return frame.Decode(m.B, frame.MaxFrameSize)
}
