package vyx

// The net/http API under a scripted gateway: apps people already have (http.ServeMux,
// chi, gin) mounted under a prefix see the request as http.Server would give it; HEAD,
// panics, bad heads, streaming, cancellation and request bodies follow the host rules.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"

	"github.com/vyx-dev/vyx/sdk-go/frame"
)

// seen is what an app saw of a request, as JSON-free text for the assertions.
func seen(r *http.Request, param string) string {
	return fmt.Sprintf("path=%s raw=%s query=%s host=%s remote=%s param=%s x=%s",
		r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.RemoteAddr, param, r.Header.Get("X-Multi"))
}

// answer reads one whole response of stream id: status, headers, body.
func (c *gwConn) answer(id uint32) (*frame.Response, []byte) {
	c.t.Helper()
	f, err := c.next()
	r, ok := f.(*frame.Response)
	if err != nil || !ok || r.StreamID != id {
		c.t.Fatalf("want RESPONSE on %d, got %#v (%v)", id, f, err)
	}
	var body []byte
	for end := r.EndStream; !end; {
		f, err := c.next()
		d, ok := f.(*frame.Data)
		if err != nil || !ok || d.StreamID != id {
			c.t.Fatalf("want DATA on %d, got %#v (%v)", id, f, err)
		}
		body, end = append(body, d.Data...), d.EndStream
	}
	return r, body
}

func header(r *frame.Response, name string) []string {
	var out []string
	for _, f := range r.Headers {
		if f.Name == name {
			out = append(out, string(f.Value))
		}
	}
	return out
}

// forwarded is the REQUEST a gateway sends for GET target (headers as the vyx gateway adds them).
func (c *gwConn) forwarded(id uint32, route, target string, params ...string) *frame.Request {
	q := c.request(id, route, target, true, params...)
	q.Method = "GET"
	q.Headers = []frame.Field{{Name: "host", Value: []byte("api.example:8080")},
		{Name: "x-multi", Value: []byte("1")}, {Name: "x-multi", Value: []byte("2")},
		{Name: "x-forwarded-for", Value: []byte("203.0.113.9, 198.51.100.7")},
		{Name: "forwarded", Value: []byte(`for=198.51.100.7;proto=http;host="api.example:8080"`)}}
	return q
}

func TestMountedApps(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, seen(r, r.PathValue("id")))
	})
	router := chi.NewRouter()
	router.Get("/chi/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, seen(r, chi.URLParam(r, "id")))
	})
	engine := gin.New()
	engine.GET("/gin/users/:id", func(c *gin.Context) { c.String(200, seen(c.Request, c.Param("id"))) })

	g := newFakeGateway(t)
	startWorker(t, g, func(w *Worker) {
		w.Handle("/api/{*rest}", mux)
		w.Handle("/chi/{rest...}", router) // Go's catch-all spelling works too
		w.Handle("/gin/{*rest}", engine)
	}, Config{})
	c := g.accept()
	c.welcome(0)
	// gin routes on the decoded path (its default), so its target has no %2F.
	for i, app := range []string{"api", "chi", "gin"} {
		id := uint32(2*i + 1)
		raw, decoded, param := "/"+app+"/users/a%2Fb", "/"+app+"/users/a/b", "a/b"
		switch app {
		case "chi": // chi matches on RawPath when there is one, as behind http.Server
			param = "a%2Fb"
		case "gin":
			raw, decoded, param = "/gin/users/caf%C3%A9", "/gin/users/café", "café"
		}
		route := "* /" + app + "/{*rest}"
		c.send(c.forwarded(id, route, raw+"?x=1&y=%20", "rest", strings.TrimPrefix(decoded, "/"+app+"/")))
		r, body := c.answer(id)
		want := "path=" + decoded + " raw=" + raw + " query=x=1&y=%20 host=api.example:8080 " +
			"remote=198.51.100.7:0 param=" + param + " x=1"
		if r.Status != 200 || string(body) != want {
			t.Errorf("%s: %d %q\nwant %q", app, r.Status, body, want)
		}
		if ct := header(r, "content-type"); len(ct) != 1 || !strings.HasPrefix(ct[0], "text/plain") {
			t.Errorf("%s: content-type %v", app, ct)
		}
	}
	// The mux's own 404 for a path under the prefix it does not serve.
	c.send(c.forwarded(7, "* /api/{*rest}", "/api/nothing", "rest", "nothing"))
	if r, _ := c.answer(7); r.Status != 404 {
		t.Errorf("mux 404: got %d", r.Status)
	}
}

func TestHostRules(t *testing.T) {
	g := newFakeGateway(t)
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
	}, Config{})
	c := g.accept()
	c.welcome(65536)

	c.send(c.request(1, "GET /json", "/json", true))
	r, body := c.answer(1)
	if r.Status != 200 || string(body) != `{"a":1}` || header(r, "content-length")[0] != "7" || header(r, "connection") != nil {
		t.Errorf("GET /json: %d %v %q", r.Status, r.Headers, body)
	}
	if !r.EndStream && len(body) == 0 {
		t.Error("no body")
	}

	// HEAD on the GET route: the same head, END_STREAM, no body, the GET's content-length.
	head := c.request(3, "GET /json", "/json", true)
	head.Method = "HEAD"
	c.send(head)
	r, body = c.answer(3)
	if r.Status != 200 || !r.EndStream || len(body) != 0 || header(r, "content-length")[0] != "7" {
		t.Errorf("HEAD /json: %d end=%v %v %q", r.Status, r.EndStream, r.Headers, body)
	}

	// A panic before the head: 500, and the worker goes on serving.
	c.send(c.request(5, "GET /panic", "/panic", true))
	if r, body = c.answer(5); r.Status != 500 || string(body) != "internal error" {
		t.Errorf("panic: %d %q", r.Status, body)
	}
	// A panic after the head: RESET handler_error.
	c.send(c.request(7, "GET /panic-late", "/panic-late", true))
	if f, _ := c.next(); f.(*frame.Response).Status != 200 {
		t.Errorf("panic-late head: %#v", f)
	}
	if f, _ := c.next(); f.Type() != frame.TypeReset || f.(*frame.Reset).Code != frame.ResetHandlerError {
		t.Errorf("panic-late: %#v", f)
	}
	// A head that cannot be encoded: 500 (PROTOCOL.md §3.5).
	c.send(c.request(9, "GET /bad-head", "/bad-head", true))
	if r, _ = c.answer(9); r.Status != 500 {
		t.Errorf("bad head: %d", r.Status)
	}
	// 204: no body, no content-length.
	c.send(c.request(11, "GET /empty", "/empty", true))
	if r, body = c.answer(11); r.Status != 204 || !r.EndStream || header(r, "content-length") != nil {
		t.Errorf("204: %#v %q", r, body)
	}

	// Flush sends head and bytes at once; a RESET cancels r.Context() with its cause.
	c.send(c.request(13, "GET /flush", "/flush", true))
	if f, _ := c.next(); f.(*frame.Response).EndStream || header(f.(*frame.Response), "content-length") != nil {
		t.Errorf("flushed head: %#v", f)
	}
	if f, _ := c.next(); string(f.(*frame.Data).Data) != "first" {
		t.Errorf("flushed bytes: %#v", f)
	}
	c.send(&frame.Reset{StreamID: 13, Code: frame.ResetCancel, Reason: "client gone"})
	select {
	case err := <-cancelled:
		var se *StreamError
		if !errors.As(err, &se) || se.Code != frame.ResetCancel {
			t.Errorf("cause %v", err)
		}
	case <-time.After(wait):
		t.Fatal("r.Context() not cancelled by RESET")
	}

	// A streamed request body larger than the window: the worker grants credit as the
	// handler reads, so all of it arrives.
	c.send(c.request(15, "POST /sum", "/sum", false))
	sent, credit := 0, 65536
	const total = 200000
	for sent < total {
		for credit == 0 {
			f, err := c.next0()
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := f.(*frame.Window); ok && w.StreamID == 15 {
				credit += int(w.Increment)
			}
		}
		n := min(credit, total-sent, 16384)
		c.send(&frame.Data{StreamID: 15, Data: bytes.Repeat([]byte{'x'}, n), EndStream: sent+n == total})
		sent, credit = sent+n, credit-n
	}
	if r, body = c.answer(15); string(body) != "200000 <nil>" {
		t.Errorf("upload: %d %q", r.Status, body)
	}
}

// next0 is next without skipping WINDOW frames.
func (c *gwConn) next0() (frame.Frame, error) {
	m := c.read()
	if m.err != nil {
		return nil, m.err
	}
	return frame.Decode(m.b, MaxFrameSize)
}

func TestHandlePatterns(t *testing.T) {
	w, err := NewWorker(Config{Connect: "ws://127.0.0.1:1", ID: "t:p"})
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
	if goCatchAll("/files/{rest...}") != "/files/{*rest}" {
		t.Error(goCatchAll("/files/{rest...}"))
	}
	for _, cfg := range []Config{{Connect: "http://x", ID: "a"}, {Connect: "ws://x", ID: "a b"}, {Connect: "ws://x", ID: "a", MaxConcurrency: 70000}} {
		if _, err := NewWorker(cfg); err == nil {
			t.Errorf("NewWorker(%+v) accepted", cfg)
		}
	}
}
