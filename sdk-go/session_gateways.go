package vyx

// The worker's sessions (core/src/session/gateways.rs, §9.1): one per gateway in the
// Connect list and per address its host name resolves to, each reconnecting on its own,
// plus the extra sessions to an address that its first session's WELCOME asks for
// (connections). A name is resolved again every ResolveInterval and whenever one of its
// sessions fails: an address that appears gets a session, one that goes has its sessions
// drained.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// runGateways runs every target until the worker stops (nil) or every session was
// refused for good (the first refusal).
func (w *Worker) runGateways(stop context.Context, d *dialer, targets []target) error {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			td := *d
			td.url = t.url
			errs[i] = w.follow(stop, &td, t)
		}()
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		return nil
	}
	return errs[0]
}

// sessionEnd is a session's outcome, for follow.
type sessionEnd struct {
	key   int
	addr  netip.AddrPort
	first bool
	err   error
}

// live is one live session of a target.
type live struct {
	key  int
	stop *sessionStop
}

// address is the sessions to one address: the first, whose WELCOMEs say how many to hold,
// and the extras it asked for (§9.1 "Connections per address").
type address struct {
	first live
	// asked is the connections of the first session's latest WELCOME; 0 before its first.
	asked *atomic.Uint64
	// applied is the count the extras were last matched to.
	applied uint64
	extras  []live
}

func (a *address) drain(deadline time.Duration) {
	a.first.stop.now(deadline)
	for _, e := range a.extras {
		e.stop.now(deadline)
	}
}

// follow keeps the sessions of every address of t (one, and the extras its WELCOME asks
// for) until the worker stops (nil) or every address refused the worker (the first
// refusal).
func (w *Worker) follow(stop context.Context, d *dialer, t target) error {
	sessions := map[netip.AddrPort]*address{}
	refused := map[netip.AddrPort]bool{}
	var refusal error
	ended := make(chan sessionEnd)
	running := 0
	failed := make(chan struct{}, 1)
	// A first session accepted a WELCOME: match the extras to it. One pending poke is enough.
	poke := make(chan struct{}, 1)
	// Stands for the target in Gateways while its name resolves to nothing.
	var unresolved *session
	backoff := protocol.NewBackoff(randomSeed())
	key := 0
	stopping := false
	// start starts a session to a: the address's first (it reports its WELCOMEs to asked)
	// or an extra (asked nil).
	start := func(a netip.AddrPort, asked *atomic.Uint64) live {
		key++
		ss := newSessionStop()
		running++
		var line *sessionAsked
		if asked != nil {
			line = &sessionAsked{connections: asked, poke: poke}
		}
		go func(key int) {
			ended <- sessionEnd{key: key, addr: a, first: asked != nil, err: w.runSession(d, a, ss, failed, line)}
		}(key)
		return live{key: key, stop: ss}
	}
	// matchAsked starts or drains extras so that s holds what its first session's latest
	// WELCOME asked for. An extra that ended (refused) is not replaced until the count
	// changes.
	matchAsked := func(a netip.AddrPort, s *address) {
		asked := s.asked.Load()
		if asked == 0 || asked == s.applied {
			return
		}
		w.log.Info("vyx: holding the connections the gateway asks for", "gateway", t.url, "address", a, "connections", asked)
		extras := int(asked - 1)
		for len(s.extras) > extras {
			s.extras[len(s.extras)-1].stop.now(DefaultDrainTimeout)
			s.extras = s.extras[:len(s.extras)-1]
		}
		for len(s.extras) < extras {
			s.extras = append(s.extras, start(a, nil))
		}
		s.applied = asked
	}
	for !stopping && stop.Err() == nil {
		addrs, err := w.addresses(stop, t)
		if stop.Err() != nil {
			break
		}
		wait := w.cfg.ResolveInterval
		if err == nil && len(addrs) > 0 {
			backoff.Reset()
			if unresolved != nil {
				unresolved.set(State{Kind: Stopped})
				unresolved = nil
			}
			for _, a := range addrs {
				if _, ok := sessions[a]; ok || refused[a] {
					continue
				}
				asked := new(atomic.Uint64)
				sessions[a] = &address{first: start(a, asked), asked: asked}
			}
			for a, s := range sessions {
				if !slices.Contains(addrs, a) {
					w.log.Info("vyx: address gone from DNS: draining its sessions", "gateway", t.url, "address", a)
					s.drain(DefaultDrainTimeout)
					delete(sessions, a)
				}
			}
		} else {
			cause := err
			if cause == nil {
				cause = fmt.Errorf("%s resolves to no address", t.host)
			} else {
				cause = fmt.Errorf("cannot resolve %s: %w", t.host, err)
			}
			if len(sessions) == 0 {
				delay := time.Duration(backoff.DelayMS()) * time.Millisecond
				w.log.Warn("vyx: resolving again", "gateway", t.url, "cause", cause, "delay", delay)
				if unresolved == nil {
					unresolved = w.newSession(t.url, netip.AddrPort{})
				}
				unresolved.set(State{Kind: Reconnecting, Attempt: backoff.Attempt(), Delay: delay, Err: cause})
				wait = delay
			} else {
				w.log.Warn("vyx: keeping the sessions it has", "gateway", t.url, "cause", cause)
			}
		}
		timer := time.NewTimer(wait)
	waiting:
		for {
			if len(sessions) == 0 && running == 0 && unresolved == nil {
				timer.Stop()
				return refusal // every address refused the worker for good
			}
			select {
			case <-timer.C:
				break waiting
			case <-failed:
				timer.Stop()
				break waiting
			case <-poke:
				for a, s := range sessions {
					matchAsked(a, s)
				}
			case e := <-ended:
				running--
				s, ok := sessions[e.addr]
				if !e.first {
					// An extra ends the extra only (§9.1).
					if ok {
						s.extras = slices.DeleteFunc(s.extras, func(l live) bool { return l.key == e.key })
					}
					continue
				}
				if ok && s.first.key == e.key {
					// The first session ended for good: so do the extras.
					for _, x := range s.extras {
						x.stop.now(DefaultDrainTimeout)
					}
					delete(sessions, e.addr)
				}
				if e.err != nil {
					refused[e.addr] = true
					if refusal == nil {
						refusal = e.err
					}
				}
			case <-stop.Done():
				timer.Stop()
				stopping = true
				break waiting
			}
		}
	}
	// The worker is stopping: every session drains with the worker's deadline.
	w.mu.Lock()
	w.sessions.stopping = true
	deadline := w.stopDeadline
	w.mu.Unlock()
	for _, s := range sessions {
		s.drain(deadline)
	}
	if unresolved != nil {
		unresolved.set(State{Kind: Stopped})
	}
	for ; running > 0; running-- {
		<-ended
	}
	return nil
}
