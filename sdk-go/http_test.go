package vyx

// The net/http API under a scripted gateway: HEAD, panics, bad heads, streaming,
// cancellation and request bodies follow the host rules (mounted apps: internal/frameworks).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

func TestHostRules(t *testing.T) {
	g := gwtest.New(t)
	cancelled := make(chan error, 1)
	startWorker(t, g, func(w *Worker) {
		w.Get("/json", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Connection", "close") // hop-by-hop: dropped
			io.WriteString(rw, `{"a":1}`)
		})
		w.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("on purpose") })
		w.Get("/panic-late", func(rw http.ResponseWriter, r *http.Request) {
			rw.WriteHeader(200)
			_, _ = rw.Write([]byte("written"))
			rw.(http.Flusher).Flush()
			panic("after the head")
		})
		w.Get("/bad-head", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("X-Bad", "line\nbreak")
			io.WriteString(rw, "never sent")
		})
		w.Get("/flush", func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, "first")
			if err := http.NewResponseController(rw).Flush(); err != nil {
				t.Error(err)
			}
			<-r.Context().Done() // until the gateway resets the stream
			cancelled <- context.Cause(r.Context())
		})
		w.Post("/sum", func(rw http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			fmt.Fprintf(rw, "%d %v", len(b), err)
		})
		w.Get("/empty", func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(204) })
		w.Any("/any", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, r.Method) })
		w.Put("/nothing", func(http.ResponseWriter, *http.Request) {})
	}, Config{})
	c := g.Accept()
	c.Welcome(65536)

	c.Send(c.Request(1, "GET /json", "/json", true))
	r, body := c.Answer(1)
	if r.Status != 200 || string(body) != `{"a":1}` || gwtest.Header(r, "content-length")[0] != "7" || gwtest.Header(r, "connection") != nil {
		t.Errorf("GET /json: %d %v %q", r.Status, r.Headers, body)
	}
	if !r.EndStream && len(body) == 0 {
		t.Error("no body")
	}

	// HEAD on the GET route: the same head, END_STREAM, no body, the GET's content-length.
	head := c.Request(3, "GET /json", "/json", true)
	head.Method = "HEAD"
	c.Send(head)
	r, body = c.Answer(3)
	if r.Status != 200 || !r.EndStream || len(body) != 0 || gwtest.Header(r, "content-length")[0] != "7" {
		t.Errorf("HEAD /json: %d end=%v %v %q", r.Status, r.EndStream, r.Headers, body)
	}

	// A panic before the head: 500, and the worker goes on serving.
	c.Send(c.Request(5, "GET /panic", "/panic", true))
	if r, body = c.Answer(5); r.Status != 500 || string(body) != "internal error" {
		t.Errorf("panic: %d %q", r.Status, body)
	}
	// A panic after the head: RESET handler_error, after the body flushed before it.
	c.Send(c.Request(7, "GET /panic-late", "/panic-late", true))
	if f, _ := c.Next(); f.(*frame.Response).Status != 200 {
		t.Errorf("panic-late head: %#v", f)
	}
	if f, _ := c.Next(); f.Type() != frame.TypeData || string(f.(*frame.Data).Data) != "written" {
		t.Errorf("panic-late body: %#v", f)
	}
	if f, _ := c.Next(); f.Type() != frame.TypeReset || f.(*frame.Reset).Code != frame.ResetHandlerError {
		t.Errorf("panic-late: %#v", f)
	}
	// A head that cannot be encoded: 500 (PROTOCOL.md §3.5).
	c.Send(c.Request(9, "GET /bad-head", "/bad-head", true))
	if r, _ = c.Answer(9); r.Status != 500 {
		t.Errorf("bad head: %d", r.Status)
	}
	// 204: no body, no content-length.
	c.Send(c.Request(11, "GET /empty", "/empty", true))
	if r, body = c.Answer(11); r.Status != 204 || !r.EndStream || gwtest.Header(r, "content-length") != nil {
		t.Errorf("204: %#v %q", r, body)
	}

	// Flush sends head and bytes at once; a RESET cancels r.Context() with its cause.
	c.Send(c.Request(13, "GET /flush", "/flush", true))
	if f, _ := c.Next(); f.(*frame.Response).EndStream || gwtest.Header(f.(*frame.Response), "content-length") != nil {
		t.Errorf("flushed head: %#v", f)
	}
	if f, _ := c.Next(); string(f.(*frame.Data).Data) != "first" {
		t.Errorf("flushed bytes: %#v", f)
	}
	c.Send(&frame.Reset{StreamID: 13, Code: frame.ResetCancel, Reason: "client gone"})
	select {
	case err := <-cancelled:
		var se *StreamError
		if !errors.As(err, &se) || se.Code != frame.ResetCancel || !errors.Is(err, ErrStreamReset) || errors.Is(err, ErrConnectionLost) {
			t.Errorf("cause %v", err)
		}
	case <-time.After(gwtest.Wait):
		t.Fatal("r.Context() not cancelled by RESET")
	}

	// A streamed request body larger than the window: the worker grants credit as the
	// handler reads, so all of it arrives.
	c.Send(c.Request(15, "POST /sum", "/sum", false))
	sent, credit := 0, 65536
	const total = 200000
	for sent < total {
		for credit == 0 {
			f, err := c.NextAny()
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := f.(*frame.Window); ok && w.StreamID == 15 {
				credit += int(w.Increment)
			}
		}
		n := min(credit, total-sent, 16384)
		c.Send(&frame.Data{StreamID: 15, Data: bytes.Repeat([]byte{'x'}, n), EndStream: sent+n == total})
		sent, credit = sent+n, credit-n
	}
	if r, body = c.Answer(15); string(body) != "200000 <nil>" {
		t.Errorf("upload: %d %q", r.Status, body)
	}

	// Any takes whatever method comes; a handler that writes nothing answers 200, empty,
	// as in every vyx SDK.
	anyReq := c.Request(17, "* /any", "/any", true)
	anyReq.Method = "PROPFIND"
	c.Send(anyReq)
	if r, body = c.Answer(17); r.Status != 200 || string(body) != "PROPFIND" {
		t.Errorf("any: %d %q", r.Status, body)
	}
	c.Send(c.Request(19, "PUT /nothing", "/nothing", true))
	if r, body = c.Answer(19); r.Status != 200 || len(body) != 0 {
		t.Errorf("nothing: %d %q", r.Status, body)
	}
}

func TestHandlePatterns(t *testing.T) {
	w, err := NewWorker(Config{Connect: []string{"ws://127.0.0.1:1"}, ID: "t:p"})
	if err != nil {
		t.Fatal(err)
	}
	w.Get("/a/{id}", func(http.ResponseWriter, *http.Request) {})
	for _, bad := range []string{"GET /a/{key}", "get /x", "/x/{*rest}/y", "GET nopath"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q) did not panic", bad)
				}
			}()
			w.Handle(bad, http.NotFoundHandler())
		}()
	}
	for in, want := range map[string][2]string{
		"/files/{rest...}": {"/files/{*rest}", ""},
		"/b/{$}":           {"/b/", ""},
		"/{$}":             {"/", ""},
		"/e/":              {"/e/{*" + subtreeParam + "}", "/e"},
		"/":                {"/{*" + subtreeParam + "}", ""},
		"/e":               {"/e", ""},
	} {
		if p, root := protocolPath(in); p != want[0] || root != want[1] {
			t.Errorf("protocolPath(%q) = %q, %q; want %q", in, p, root, want)
		}
	}
	for _, cfg := range []Config{{Connect: []string{"http://x"}, ID: "a"}, {Connect: []string{"ws://x"}, ID: "a b"}, {Connect: []string{"ws://x"}, ID: "a", MaxConcurrency: 70000}} {
		if _, err := NewWorker(cfg); err == nil {
			t.Errorf("NewWorker(%+v) accepted", cfg)
		}
	}
}

// Every field a HELLO carries from the user is bounded (§2.4 rules 3a, 6, 7): an over-long
// one is a local error, from NewWorker, Handle or Start, and nothing is dialed (the address
// is a closed port: a dial would end in a retry, not an error).
func TestOverlongFieldsRefusedBeforeDialing(t *testing.T) {
	long := strings.Repeat("x", 257)
	for _, cfg := range []Config{
		{Instance: long},
		{Labels: map[string]string{"k": long}},
		{Labels: map[string]string{long: "v"}},
		{Labels: func() map[string]string {
			m := map[string]string{}
			for i := 0; i <= protocol.MaxLabels; i++ {
				m[fmt.Sprint(i)] = "v"
			}
			return m
		}()},
	} {
		cfg.Connect, cfg.ID = []string{"ws://127.0.0.1:1"}, "t:p"
		if _, err := NewWorker(cfg); err == nil || !strings.Contains(err.Error(), "allowed") {
			t.Errorf("NewWorker with %d-byte instance, %d labels: %v", len(cfg.Instance), len(cfg.Labels), err)
		}
	}
	labels := map[string]string{}
	w, err := NewWorker(Config{Connect: []string{"ws://127.0.0.1:1"}, ID: "t:p", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"GET " + strings.Repeat("/a", protocol.MaxPatternSegments+1),
		"GET " + strings.Repeat("/a", 20000),
		"GET " + strings.Repeat("/", 30000),
		"GET /" + strings.Repeat("x", protocol.MaxPatternLen),
		strings.Repeat("X", protocol.MaxMethodLen+1) + " /a",
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%.40q...) did not panic", bad)
				}
			}()
			w.Handle(bad, http.NotFoundHandler())
		}()
	}
	w.Get(strings.Repeat("/a", protocol.MaxPatternSegments), func(http.ResponseWriter, *http.Request) {})
	labels["k"] = long // after NewWorker: Start checks the HELLO it would send
	err = w.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `label "k": value is 257 bytes`) {
		t.Fatalf("Start: %v", err)
	}
}

func TestRemoteAddr(t *testing.T) {
	for _, c := range []struct {
		xff  string
		want string
	}{
		{"203.0.113.9, 127.0.0.1", "127.0.0.1:0"},
		{"[2001:db8::1]:4711", "[2001:db8::1]:0"},
		{"unknown", ""},
	} {
		h := []frame.Field{{Name: "x-forwarded-for", Value: []byte(c.xff)}}
		if got := remoteAddr(h); got != c.want {
			t.Errorf("remoteAddr(%q) = %q, want %q", c.xff, got, c.want)
		}
	}
}

// The worker's lines about a request carry the gateway's request id.
func TestRequestLogsCarryTheRequestID(t *testing.T) {
	g := gwtest.New(t)
	var logs syncBuffer
	startWorker(t, g, func(w *Worker) {
		w.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("on purpose") })
	}, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := g.Accept()
	c.Welcome(65536)
	req := c.Request(1, "GET /panic", "/panic", true)
	req.Headers = append(req.Headers, frame.Field{Name: "x-request-id", Value: []byte("req-42")})
	c.Send(req)
	if r, _ := c.Answer(1); r.Status != 500 {
		t.Fatalf("panic: %d", r.Status)
	}
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "handler panicked") {
			line = l
		}
	}
	if !strings.Contains(line, "request_id=req-42") {
		t.Errorf("no request_id in %q", line)
	}
}

// syncBuffer is a bytes.Buffer the worker's goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// r.Proto is the client's HTTP version, from the gateway's via element (HOSTS.md §5).
func TestProtoFromVia(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.Get("/proto", func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "%s %d %d", r.Proto, r.ProtoMajor, r.ProtoMinor)
		})
	}, Config{})
	c := g.Accept()
	c.Welcome(65536)
	for i, tc := range []struct{ via, want string }{
		{"1.1 client-proxy, 2 vyx", "HTTP/2.0 2 0"},
		{"1.0 vyx", "HTTP/1.0 1 0"},
		{"", "HTTP/1.1 1 1"},
	} {
		id := uint32(2*i + 1)
		req := c.Request(id, "GET /proto", "/proto", true)
		if tc.via != "" {
			req.Headers = append(req.Headers, frame.Field{Name: "via", Value: []byte(tc.via)})
		}
		c.Send(req)
		if _, body := c.Answer(id); string(body) != tc.want {
			t.Errorf("via %q: %q, want %q", tc.via, body, tc.want)
		}
	}
}
