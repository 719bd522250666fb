package vyx

// Trailers (PROTOCOL.md §3.10) under a scripted gateway.

import (
	"io"
	"net/http"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// Without the extension negotiated, a handler's trailers are dropped as net/http drops
// them for a client that cannot take them: the response itself is unchanged, and an
// http.TrailerPrefix key is never sent as a header (its name is not a token: it was 500).
func TestTrailersWithoutTheExtensionAreDropped(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.Get("/t", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Trailer", "X-Sum")
			rw.Header().Set(http.TrailerPrefix+"X-Early", "set before the head")
			io.WriteString(rw, "body")
			rw.Header().Set("X-Sum", "4")
		})
	}, Config{})
	c := g.Accept()
	c.Welcome(0)
	c.Send(c.Request(1, "GET /t", "/t", true))
	r, body := c.Answer(1)
	if r.Status != 200 || string(body) != "body" {
		t.Fatalf("GET /t: %d %v %q", r.Status, r.Headers, body)
	}
	for _, f := range r.Headers {
		if f.Name == "trailer" || f.Name == "trailer:x-early" || f.Name == "x-sum" {
			t.Errorf("header %s sent", f.Name)
		}
	}
}
