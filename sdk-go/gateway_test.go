package vyx

// A scripted gateway for the session tests: a WebSocket server on 127.0.0.1 that speaks
// vyx.1 one move at a time, as the conformance runner's worker probes do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/frame"
)

// wait bounds every wait of the session tests (generous: a busy 2-core machine).
const wait = 10 * time.Second

type message struct {
	typ websocket.MessageType
	b   []byte
	err error
}

// gwConn is one accepted worker connection.
type gwConn struct {
	t     *testing.T
	ws    *websocket.Conn
	req   *http.Request
	hello *frame.Hello
	msgs  chan message
	done  chan struct{}
}

// fakeGateway accepts upgrades; answer (when set) may refuse one instead (HTTP status).
type fakeGateway struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *gwConn
	// answer decides each upgrade: nil → accept with vyx.1.
	answer   func(attempt int, w http.ResponseWriter, r *http.Request) (accept bool, subprotocol bool)
	mu       sync.Mutex
	attempts int
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{t: t, conns: make(chan *gwConn, 16)}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) url() string { return "ws://" + strings.TrimPrefix(g.srv.URL, "http://") }

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.attempts++
	attempt := g.attempts
	g.mu.Unlock()
	accept, sub := true, true
	if g.answer != nil {
		accept, sub = g.answer(attempt, w, r)
	}
	if !accept {
		return
	}
	opts := &websocket.AcceptOptions{}
	if sub {
		opts.Subprotocols = []string{Subprotocol}
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	c := &gwConn{t: g.t, ws: ws, req: r, msgs: make(chan message, 64), done: make(chan struct{})}
	go func() {
		defer close(c.msgs)
		for {
			typ, b, err := ws.Read(context.Background())
			c.msgs <- message{typ, b, err}
			if err != nil {
				return
			}
		}
	}()
	g.conns <- c
	<-c.done
}

// accept waits for the next connection and reads its HELLO.
func (g *fakeGateway) accept() *gwConn {
	g.t.Helper()
	select {
	case c := <-g.conns:
		g.t.Cleanup(func() { close(c.done); _ = c.ws.CloseNow() })
		m := c.read()
		if m.err != nil {
			g.t.Fatalf("no HELLO: %v", m.err)
		}
		f, err := frame.Decode(m.b, MaxFrameSize)
		if err != nil {
			g.t.Fatalf("first frame: %v", err)
		}
		h, ok := f.(*frame.Hello)
		if !ok {
			g.t.Fatalf("first frame is %s, not HELLO", frame.TypeName(f.Type()))
		}
		c.hello = h
		return c
	case <-time.After(wait):
		g.t.Fatal("no connection from the worker")
	}
	return nil
}

// noAttempt checks that no further upgrade comes within d.
func (g *fakeGateway) noAttempt(d time.Duration) {
	g.t.Helper()
	select {
	case <-g.conns:
		g.t.Fatal("the worker connected again")
	case <-time.After(d):
	}
}

func (g *fakeGateway) attemptCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.attempts
}

// read returns the next message (pings and pongs never surface: the library answers them).
func (c *gwConn) read() message {
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return message{err: io.EOF}
		}
		return m
	case <-time.After(wait):
		return message{err: errors.New("nothing from the worker in time")}
	}
}

// welcome sends a WELCOME with the defaults of spec/vectors/README.md and overrides.
func (c *gwConn) welcome(initialWindow uint64) {
	if initialWindow == 0 {
		initialWindow = DefaultInitialWindow
	}
	c.send(&frame.Welcome{Protocol: 1, Gateway: "fake/0", ConnectionID: "c1", HeartbeatMS: 10000,
		InitialWindow: initialWindow, MaxFrameSize: MaxFrameSize, MaxConcurrency: c.hello.MaxConcurrency})
}

func (c *gwConn) send(f frame.Frame) { c.sendRaw(websocket.MessageBinary, f.Encode()) }

func (c *gwConn) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.ws.Write(context.Background(), typ, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next is the worker's next frame, its WINDOW frames skipped.
func (c *gwConn) next() (frame.Frame, error) {
	for {
		m := c.read()
		if m.err != nil {
			return nil, m.err
		}
		f, err := frame.Decode(m.b, MaxFrameSize)
		if err != nil {
			return nil, fmt.Errorf("the worker sent an undecodable frame: %v", err)
		}
		if f.Type() != frame.TypeWindow {
			return f, nil
		}
	}
}

// closeCode waits for the worker's close and returns its code.
func (c *gwConn) closeCode() int {
	for {
		m := c.read()
		if m.err != nil {
			var ce websocket.CloseError
			if errors.As(m.err, &ce) {
				return int(ce.Code)
			}
			return -1
		}
	}
}

// request builds a REQUEST for route ("METHOD /pattern" of the HELLO).
func (c *gwConn) request(id uint32, route, target string, end bool, params ...string) *frame.Request {
	c.t.Helper()
	routeID := uint64(65535)
	if route != "unknown" {
		found := false
		for _, r := range c.hello.Routes {
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

// startWorker starts w against g and stops it when the test ends; states are recorded.
func startWorker(t *testing.T, g *fakeGateway, setup func(*Worker), cfg Config) (*Worker, *stateLog, chan error) {
	t.Helper()
	states := &stateLog{changed: make(chan struct{}, 1)}
	cfg.Connect, cfg.OnState = g.url(), states.add
	if cfg.ID == "" {
		cfg.ID = "test:go"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup(w)
	done := make(chan error, 1)
	go func() { done <- w.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = w.Shutdown(ctx)
	})
	return w, states, done
}

type stateLog struct {
	mu      sync.Mutex
	states  []State
	changed chan struct{}
}

func (l *stateLog) add(s State) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *stateLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.states {
		out = append(out, s.Kind.String())
	}
	return out
}

// jsonOf decodes a body as JSON.
func jsonOf(b []byte) any {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return v
}
