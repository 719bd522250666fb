package vyx

import (
	"sync"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// Handlers run on goroutines kept between requests. A goroutine started per request begins
// with the runtime's smallest stack and grows it (a copy each time the stack doubles) as the
// handler's calls get deeper: ServeMux, encoding/json, the response writer; a kept one has
// grown it once. net/http keeps one goroutine per client connection for the same reason.

// maxIdleHandlers bounds the goroutines kept waiting for a request: a burst beyond it
// leaves the extra ones to end (each holds its stack, a few KiB, while it waits).
const maxIdleHandlers = 256

// handlers hands streams to waiting goroutines, starting one when none waits.
type handlers struct {
	serve func(*stream, *frame.Request) // set once, before the first request

	mu      sync.Mutex
	idle    []chan handlerJob // most recently parked last: its stack is the warmest
	stopped bool
}

type handlerJob struct {
	s *stream
	r *frame.Request
}

// serveStream serves r's stream on a waiting goroutine, or a new one: the connection's
// serve.
func (w *Worker) serveStream(s *stream, r *frame.Request) {
	h := &w.handlers
	h.mu.Lock()
	if n := len(h.idle); n > 0 {
		next := h.idle[n-1]
		h.idle = h.idle[:n-1]
		h.mu.Unlock()
		next <- handlerJob{s, r} // buffered: never blocks
		return
	}
	h.mu.Unlock()
	go h.loop(handlerJob{s, r})
}

// loop serves jobs until it is not kept (too many wait) or the worker has stopped.
func (h *handlers) loop(j handlerJob) {
	next := make(chan handlerJob, 1)
	for {
		h.serve(j.s, j.r)
		h.mu.Lock()
		if h.stopped || len(h.idle) >= maxIdleHandlers {
			h.mu.Unlock()
			return
		}
		h.idle = append(h.idle, next)
		h.mu.Unlock()
		var ok bool
		if j, ok = <-next; !ok {
			return
		}
	}
}

// stop ends the waiting goroutines; those serving end when their request is done.
func (h *handlers) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for _, next := range h.idle {
		close(next)
	}
	h.idle = nil
}
