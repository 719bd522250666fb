package vyx

// Interim (1xx) responses (PROTOCOL.md §3.11) under a scripted gateway.

import (
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// With "informational" granted, WriteHeader(103) sends INFORMATIONAL with the header set
// so far, which the map keeps for the final response (net/http's semantics); past
// MaxInformational they are dropped.
func TestWriteHeader1xxSendsAnInterimResponse(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.Get("/e", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Link", "</style.css>; rel=preload; as=style")
			rw.Header().Set("Connection", "close") // hop-by-hop: never sent
			for range 9 {
				rw.WriteHeader(http.StatusEarlyHints)
			}
			rw.Header().Del("Connection")
			rw.Header().Set("Content-Type", "text/plain")
			io.WriteString(rw, "ok")
		})
	}, Config{})
	c := g.Accept()
	if !slices.Contains(c.Hello.Features, "informational") {
		t.Fatalf("HELLO offers %v", c.Hello.Features)
	}
	c.WelcomeFeatures(262144, "informational")
	c.Send(c.Request(1, "GET /e", "/e", true))
	for i := range 8 {
		f, err := c.Next()
		in, ok := f.(*frame.Informational)
		if err != nil || !ok {
			t.Fatalf("interim %d: want INFORMATIONAL, got %#v (%v)", i, f, err)
		}
		want := []frame.Field{{Name: "link", Value: []byte("</style.css>; rel=preload; as=style")}}
		if in.StreamID != 1 || in.Status != 103 || !slices.EqualFunc(in.Headers, want, sameField) {
			t.Fatalf("interim %d: %d %v", i, in.Status, in.Headers)
		}
	}
	r, body := c.Answer(1)
	if r.Status != 200 || string(body) != "ok" {
		t.Fatalf("GET /e: %d %v %q", r.Status, r.Headers, body)
	}
	if got := gwtest.Header(r, "link"); len(got) != 1 {
		t.Errorf("the final response lost the link header: %v", r.Headers)
	}
}

func sameField(a, b frame.Field) bool { return a.Name == b.Name && string(a.Value) == string(b.Value) }

// Without the extension, a 1xx is dropped as before: the first frame is the RESPONSE.
func TestWriteHeader1xxWithoutTheExtensionIsDropped(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.Get("/e", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Link", "</a.css>; rel=preload")
			rw.WriteHeader(http.StatusEarlyHints)
			io.WriteString(rw, "ok")
		})
	}, Config{})
	c := g.Accept()
	c.Welcome(0)
	c.Send(c.Request(1, "GET /e", "/e", true))
	r, body := c.Answer(1)
	if r.Status != 200 || string(body) != "ok" {
		t.Fatalf("GET /e: %d %v %q", r.Status, r.Headers, body)
	}
}
