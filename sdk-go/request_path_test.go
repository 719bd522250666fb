package vyx

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// helloMux is examples/go/hello's GET route, the handler of the benchmark's Go row.
func helloMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := json.Marshal(map[string]string{"hello": r.PathValue("name"), "lang": "go"})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return mux
}

// benchRequest is the REQUEST the vyx gateway forwards for wrk's `GET /hello/world`.
// The worker's only route has id 0.
func benchRequest(id uint32) *frame.Request {
	return &frame.Request{StreamID: id, EndStream: true, Method: "GET", Target: "/hello/world",
		Params: []frame.Field{{Name: "name", Value: []byte("world")}}, Headers: benchHeaders}
}

var benchHeaders = []frame.Field{{Name: "host", Value: []byte("127.0.0.1:9000")},
	{Name: "x-forwarded-for", Value: []byte("127.0.0.1")},
	{Name: "x-forwarded-host", Value: []byte("127.0.0.1:9000")},
	{Name: "x-forwarded-proto", Value: []byte("http")},
	{Name: "forwarded", Value: []byte(`for=127.0.0.1;host="127.0.0.1:9000";proto=http`)},
	{Name: "x-request-id", Value: []byte("0195f0c0-6d1c-7a3e-9b2a-5f0e8c1d2b3a")},
	{Name: "via", Value: []byte("1.1 vyx")}}

// BenchmarkServeSmallRequest serves the benchmark's small JSON request through a scripted
// gateway, 32 in flight as wrk keeps them: allocs/op is per request, the gateway side's
// (encoding REQUEST, decoding the answer) included.
//
//	go test -run '^$' -bench ServeSmallRequest -benchmem
func BenchmarkServeSmallRequest(b *testing.B) {
	g := gwtest.New(b)
	mux := helloMux()
	startWorker(b, g, func(w *Worker) { w.Handle("GET /hello/{name}", mux) }, Config{})
	c := g.Accept()
	c.Welcome(1 << 20)
	const inFlight = 32
	reqs := make([][]byte, 0, inFlight)
	id := uint32(1)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += inFlight {
		n := min(inFlight, b.N-done)
		b.StopTimer()
		reqs = reqs[:0]
		for i := 0; i < n; i++ {
			reqs = append(reqs, benchRequest(id+uint32(i)).Encode())
		}
		b.StartTimer()
		for _, q := range reqs {
			c.SendRaw(2, q) // websocket.MessageBinary
		}
		// Answers come in any order: count the streams that ended.
		for ended := 0; ended < n; {
			f, err := c.Next()
			switch f := f.(type) {
			case *frame.Response:
				if f.Status != 200 {
					b.Fatalf("status %d", f.Status)
				}
			case *frame.Data:
				if f.EndStream {
					ended++
				}
			default:
				b.Fatalf("want RESPONSE or DATA, got %#v (%v)", f, err)
			}
		}
		id += uint32(n)
	}
}

// The request path's own allocations per request, counted (issue 21 item 4): decoding the
// benchmark's REQUEST, building its *http.Request, and the head of its small JSON answer.
// Before the values shared one string and names were remembered canonical, a request cost
// 30 and its head 4; before a head's fields shared one copy, decoding cost 34.
func TestRequestPathAllocations(t *testing.T) {
	q := benchRequest(1)
	msg := q.Encode()
	n := testing.AllocsPerRun(200, func() { _, _ = frame.Decode(msg, frame.MaxFrameSize) })
	t.Logf("allocations: decoding %v", n)
	if n > 5 {
		t.Errorf("decoding a REQUEST costs %v allocations, want at most 5", n)
	}
	s := &stream{ctx: context.Background()}
	rt := newRoute("GET", "/hello/{name}", helloMux(), false)
	req := newRequest(s, q, rt)
	if req.PathValue("name") != "world" || req.Header.Get("X-Request-Id") == "" || req.Host != "127.0.0.1:9000" || req.Proto != "HTTP/1.1" {
		t.Fatalf("the request is not the one sent: %+v", req)
	}
	n = testing.AllocsPerRun(200, func() { newRequest(s, q, rt) })
	t.Logf("allocations: request %v", n)
	if n > 14 {
		t.Errorf("building a request costs %v allocations, want at most 14", n)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	body := []byte(`{"hello":"world","lang":"go"}`)
	n = testing.AllocsPerRun(200, func() { _, _ = encodeHead(200, h, body, false, false) })
	t.Logf("allocations: response head %v", n)
	if n > 2 {
		t.Errorf("encoding a response head costs %v allocations, want at most 2", n)
	}
}
