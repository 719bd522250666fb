package vyx

// Trailers (PROTOCOL.md §3.10) under a scripted gateway.

import (
	"io"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
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

// With "trailers" granted, a request's TRAILERS fill Request.Trailer once the body is read,
// and the trailers a handler announced (Trailer) or set (http.TrailerPrefix) end its
// response as TRAILERS behind the body, as net/http sends chunked trailers.
func TestTrailersBothWays(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		w.Post("/sum", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Trailer", "Grpc-Status")
			before := r.Trailer.Get("X-Sum") // net/http: empty until the body is read
			b, _ := io.ReadAll(r.Body)
			io.WriteString(rw, string(b)+" before="+before+" after="+r.Trailer.Get("X-Sum"))
			rw.Header().Set("Grpc-Status", "0")
			rw.Header().Set(http.TrailerPrefix+"X-Late", "1")
		})
	}, Config{})
	c := g.Accept()
	if !slices.Contains(c.Hello.Features, "trailers") {
		t.Fatalf("HELLO offers %v", c.Hello.Features)
	}
	c.WelcomeFeatures(262144, "trailers")
	c.Send(c.Request(1, "POST /sum", "/sum", false))
	c.Send(&frame.Data{StreamID: 1, Data: []byte("abc")})
	c.Send(&frame.Trailers{StreamID: 1, Headers: []frame.Field{{Name: "x-sum", Value: []byte("3")}}})

	f, err := c.Next()
	r, ok := f.(*frame.Response)
	if err != nil || !ok || r.EndStream || r.Status != 200 {
		t.Fatalf("want a streamed RESPONSE, got %#v (%v)", f, err)
	}
	if got := gwtest.Header(r, "trailer"); len(got) != 1 || got[0] != "Grpc-Status" {
		t.Errorf("trailer header %q", got)
	}
	var body []byte
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*frame.Data); ok {
			if d.EndStream {
				t.Fatal("END_STREAM instead of TRAILERS")
			}
			body = append(body, d.Data...)
			continue
		}
		tr, ok := f.(*frame.Trailers)
		if !ok {
			t.Fatalf("want TRAILERS, got %#v", f)
		}
		want := []frame.Field{{Name: "grpc-status", Value: []byte("0")}, {Name: "x-late", Value: []byte("1")}}
		if !reflect.DeepEqual(tr.Headers, want) {
			t.Errorf("trailers %v, want %v", tr.Headers, want)
		}
		break
	}
	if string(body) != "abc before= after=3" {
		t.Errorf("body %q", body)
	}
}
