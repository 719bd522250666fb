package vyx

// The worker's session (core/src/session/mod.rs): connection states, delivered to the
// user in order, and the supervisor that connects, serves, and reconnects with the backoff
// of §9 until the worker drains or is refused for good.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// StateKind names a connection state.
type StateKind int

// Connection states, in the order a worker meets them.
const (
	Connecting StateKind = iota
	Connected
	Reconnecting
	Draining
	Stopped
	Failed
)

// String is the state's lower-case name.
//
//	fmt.Sprint(vyx.Reconnecting) // "reconnecting"
func (k StateKind) String() string {
	if k < 0 || int(k) >= len(stateKindNames) {
		return fmt.Sprintf("StateKind(%d)", int(k))
	}
	return stateKindNames[k]
}

var stateKindNames = [...]string{"connecting", "connected", "reconnecting", "draining", "stopped", "failed"}

// State is one connection-state change, given to Config.OnState.
type State struct {
	Kind StateKind
	// ConnectionID is WELCOME's connection_id (Connected).
	ConnectionID string
	// Attempt is the 1-based retry number and Delay the backoff before it (Reconnecting).
	Attempt uint32
	Delay   time.Duration
	// Err is why the previous connection or attempt ended (Reconnecting), or why the
	// worker stopped for good (Failed).
	Err error
}

func (s State) String() string {
	switch s.Kind {
	case Connected:
		return "connected " + s.ConnectionID
	case Reconnecting:
		return fmt.Sprintf("reconnecting %d in %s: %v", s.Attempt, s.Delay, s.Err)
	case Failed:
		return fmt.Sprintf("failed: %v", s.Err)
	}
	return s.Kind.String()
}

// stateQueue delivers states to the callback in order on a goroutine of its own: the
// session never waits for the callback, and no state is dropped or coalesced.
type stateQueue struct {
	mu      sync.Mutex
	pending []State
	wake    chan struct{}
	done    chan struct{}
	closed  bool
}

func newStateQueue(cb func(State)) *stateQueue {
	q := &stateQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for {
			q.mu.Lock()
			batch, closed := q.pending, q.closed
			q.pending = nil
			q.mu.Unlock()
			for _, s := range batch {
				if cb != nil {
					cb(s)
				}
			}
			if closed && len(batch) == 0 {
				return
			}
			if len(batch) == 0 {
				<-q.wake
			}
		}
	}()
	return q
}

func (q *stateQueue) push(s State) {
	q.mu.Lock()
	q.pending = append(q.pending, s)
	q.mu.Unlock()
	signal(q.wake)
}

// close delivers what is queued and waits for the callback to return.
func (q *stateQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wake)
	<-q.done
}

func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// supervise is run() of §9: connect, serve, and reconnect until a drain the worker asked
// for (nil), a permanent refusal (its error), or a stop before any WELCOME (an error
// wrapping ErrNeverConnected and the last failed attempt).
func (w *Worker) supervise(stop context.Context, d *dialer) error {
	backoff := protocol.NewBackoff(randomSeed())
	registered := false
	var lastFailure error // while not yet registered
	stopped := func() error {
		switch {
		case registered:
			return nil
		case lastFailure == nil:
			return fmt.Errorf("%w to %s before it was stopped", ErrNeverConnected, d.url)
		}
		return fmt.Errorf("%w to %s before it was stopped; last attempt: %w", ErrNeverConnected, d.url, lastFailure)
	}
	for {
		if stop.Err() != nil {
			return stopped()
		}
		ws, raw, welcome, err := d.connect(stop)
		var cause error
		if err == nil {
			registered = true
			w.log.Info("vyx: registered", "gateway", d.url, "worker_id", w.cfg.ID, "connection", welcome.ConnectionID)
			w.setState(State{Kind: Connected, ConnectionID: welcome.ConnectionID})
			up := time.Now()
			c := &connection{ws: ws, raw: raw, log: w.log, welcome: welcome, heard: d.heard, routes: w.routeIDs,
				serve: w.serveStream, base: w.base}
			end := c.run(w.drain, func() { w.setState(State{Kind: Draining}) })
			if end.kind == endDrained || stop.Err() != nil {
				w.log.Info("vyx: drained and disconnected")
				return nil
			}
			if end.kind == endClosed && end.code >= 0 && frame.CloseCode(end.code).IsPermanent() {
				err := &ConnectError{Kind: Refused, Code: frame.CloseCode(end.code), URL: d.url, Reason: end.reason}
				w.log.Warn("vyx: the gateway refused this worker; not reconnecting", "error", err)
				return err
			}
			if time.Since(up) >= protocol.BackoffStableMS*time.Millisecond {
				backoff.Reset()
			}
			cause = fmt.Errorf("%s", end)
		} else {
			if stop.Err() != nil {
				return stopped() // this attempt was cut short: the one before says more
			}
			if ce, ok := err.(*ConnectError); ok && ce.Permanent() {
				w.log.Error("vyx: registration refused; not retrying", "error", err)
				return err
			}
			cause = err
			lastFailure = err
		}
		delay := time.Duration(backoff.DelayMS()) * time.Millisecond
		w.log.Warn("vyx: reconnecting", "cause", cause, "attempt", backoff.Attempt(), "delay", delay)
		w.setState(State{Kind: Reconnecting, Attempt: backoff.Attempt(), Delay: delay, Err: cause})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stop.Done():
			t.Stop()
			return stopped()
		}
		w.setState(State{Kind: Connecting})
	}
}
