package vyx

// The worker's sessions (core/src/session/mod.rs, events.rs): the worker's state and each
// session's, delivered to the user in order. The sessions are kept by session_gateways.go;
// each connects, serves and reconnects in session_supervise.go.

import (
	"fmt"
	"net/netip"
	"slices"
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

// GatewayState is one session's latest state (Worker.Gateways): the worker holds a
// session to every gateway it was given, and to every address a gateway's host name
// resolves to, and the extra sessions a gateway asked for (the same Gateway and Address).
type GatewayState struct {
	// Gateway is the registration URL dialled (its host is the TLS server name and Host).
	Gateway string
	// Address is the address dialled; the zero AddrPort while the host name has not
	// resolved.
	Address netip.AddrPort
	State   State
}

// sessionStates is the latest state of each live session, and whether the worker is
// stopping: a draining session makes the worker Draining only then (a session drained
// because its address went away does not).
type sessionStates struct {
	live     map[int]GatewayState
	nextKey  int
	stopping bool
}

// session is how one session reports its state changes; the worker's follows from them.
type session struct {
	w       *Worker
	key     int
	gateway string
	address netip.AddrPort
}

// newSession registers a session, Connecting.
func (w *Worker) newSession(gateway string, address netip.AddrPort) *session {
	w.mu.Lock()
	w.sessions.nextKey++
	s := &session{w: w, key: w.sessions.nextKey, gateway: gateway, address: address}
	w.mu.Unlock()
	s.set(State{Kind: Connecting})
	return s
}

func (s *session) set(st State) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if st.Kind == Stopped || st.Kind == Failed {
		delete(w.sessions.live, s.key)
	} else {
		w.sessions.live[s.key] = GatewayState{Gateway: s.gateway, Address: s.address, State: st}
	}
	if agg := w.aggregate(st); !sameState(agg, w.state) {
		w.state = agg
		// Pushed under the lock, so that the queue's order is the order of the changes.
		w.states.push(agg)
	}
}

// aggregate is the worker's state after changed (holding w.mu): Draining once stopping,
// else Connected while at least one session is, else the latest of the sessions still
// trying.
func (w *Worker) aggregate(changed State) State {
	keys := make([]int, 0, len(w.sessions.live))
	for k := range w.sessions.live {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if w.sessions.stopping && w.sessions.live[k].State.Kind == Draining {
			return State{Kind: Draining}
		}
	}
	for _, k := range keys {
		if st := w.sessions.live[k].State; st.Kind == Connected {
			if w.state.Kind == Connected {
				return w.state // still ready: no new change
			}
			return st
		}
	}
	if changed.Kind == Connecting || changed.Kind == Reconnecting {
		return changed
	}
	agg := w.state
	for _, k := range keys {
		if st := w.sessions.live[k].State; st.Kind == Connecting || st.Kind == Reconnecting {
			agg = st
		}
	}
	return agg
}

// sameState compares two states (their Err by its message).
func sameState(a, b State) bool {
	sameErr := (a.Err == nil) == (b.Err == nil) && (a.Err == nil || a.Err.Error() == b.Err.Error())
	return a.Kind == b.Kind && a.ConnectionID == b.ConnectionID && a.Attempt == b.Attempt &&
		a.Delay == b.Delay && sameErr
}

// Gateways is each live session's latest state, in the order they began. A session ends
// when the worker stops, when its address leaves its gateway's host name, or when its
// gateway refused the worker.
//
//	for _, g := range w.Gateways() { log.Println(g.Gateway, g.Address, g.State) }
func (w *Worker) Gateways() []GatewayState {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]int, 0, len(w.sessions.live))
	for k := range w.sessions.live {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]GatewayState, len(keys))
	for i, k := range keys {
		out[i] = w.sessions.live[k]
	}
	return out
}
