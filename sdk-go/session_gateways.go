package vyx

// The worker's sessions (core/src/session/gateways.rs, §9.1): one per gateway in the
// Connect list and per address its host name resolves to, each reconnecting on its own. A
// name is resolved again every ResolveInterval and whenever one of its sessions fails: an
// address that appears gets a session, one that goes has its session drained.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
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
	key  int
	addr netip.AddrPort
	err  error
}

// follow keeps one session per address of t until the worker stops (nil) or every
// address refused the worker (the first refusal).
func (w *Worker) follow(stop context.Context, d *dialer, t target) error {
	type live struct {
		key  int
		stop *sessionStop
	}
	sessions := map[netip.AddrPort]live{}
	refused := map[netip.AddrPort]bool{}
	var refusal error
	ended := make(chan sessionEnd)
	running := 0
	failed := make(chan struct{}, 1)
	// Stands for the target in Gateways while its name resolves to nothing.
	var unresolved *session
	backoff := protocol.NewBackoff(randomSeed())
	key := 0
	stopping := false
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
				key++
				ss := newSessionStop()
				sessions[a] = live{key: key, stop: ss}
				running++
				go func(key int, a netip.AddrPort) {
					ended <- sessionEnd{key: key, addr: a, err: w.runSession(d, a, ss, failed)}
				}(key, a)
			}
			for a, s := range sessions {
				if !slices.Contains(addrs, a) {
					w.log.Info("vyx: address gone from DNS: draining its session", "gateway", t.url, "address", a)
					s.stop.now(DefaultDrainTimeout)
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
			case e := <-ended:
				running--
				if s, ok := sessions[e.addr]; ok && s.key == e.key {
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
		s.stop.now(deadline)
	}
	if unresolved != nil {
		unresolved.set(State{Kind: Stopped})
	}
	for ; running > 0; running-- {
		<-ended
	}
	return nil
}
