package vyx

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// goroutineID is the running goroutine's number, as runtime.Stack's first line shows it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// idleHandlers waits until n goroutines wait for a request (they park once their answer
// has gone), or fails.
func idleHandlers(t *testing.T, w *Worker, n int) {
	t.Helper()
	deadline := time.Now().Add(gwtest.Wait)
	for {
		w.handlers.mu.Lock()
		idle := len(w.handlers.idle)
		w.handlers.mu.Unlock()
		if idle == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines wait for a request, want %d", idle, n)
		}
		runtime.Gosched()
	}
}

// A request after another is served by the goroutine that served the first, whose stack
// has grown already: not by a new goroutine per request.
func TestHandlerGoroutinesAreKept(t *testing.T) {
	g := gwtest.New(t)
	w, _, done := startWorker(t, g, func(w *Worker) {
		w.HandleFunc("GET /g", func(rw http.ResponseWriter, r *http.Request) { _, _ = rw.Write([]byte(goroutineID())) })
	}, Config{})
	c := g.Accept()
	c.Welcome(1 << 20)
	var ids []string
	for id := uint32(1); id <= 3; id++ {
		c.Send(c.Request(id, "GET /g", "/g", true))
		res, body := c.Answer(id)
		if res.Status != 200 {
			t.Fatalf("status %d", res.Status)
		}
		ids = append(ids, string(body))
		idleHandlers(t, w, 1)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("the requests ran on goroutines %v, want one", ids)
	}
	// Stopping ends the waiting goroutine.
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), gwtest.Wait)
		defer cancel()
		shut <- w.Shutdown(ctx)
	}()
	if f, err := c.Next(); err != nil {
		t.Fatalf("want DRAIN, got %#v (%v)", f, err)
	} else if _, ok := f.(*frame.Drain); !ok {
		t.Fatalf("want DRAIN, got %#v", f)
	}
	_ = c.WS.Close(websocket.StatusNormalClosure, "drained")
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	idleHandlers(t, w, 0)
}
