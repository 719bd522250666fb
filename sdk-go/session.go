package vyx

// The worker's session (core/src/session/mod.rs): connection states, delivered to the
// user in order. The supervisor that connects, serves, and reconnects is
// session_supervise.go.

import (
	"fmt"
	"sync"
	"time"
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
