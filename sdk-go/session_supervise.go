package vyx

// One session's loop (core/src/session/supervise.rs): dial one gateway address, serve,
// and reconnect with the backoff of §9 until the worker stops it, its address goes away,
// or the gateway refuses the worker for good.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// sessionStop stops one session: its drain order for a live connection, and stop for a
// dial or a backoff wait.
type sessionStop struct {
	drain chan drainOrder
	stop  context.Context
	end   context.CancelFunc
}

func newSessionStop() *sessionStop {
	ctx, cancel := context.WithCancel(context.Background())
	return &sessionStop{drain: make(chan drainOrder, 1), stop: ctx, end: cancel}
}

// now asks the session to drain within deadline (once; later calls do nothing).
func (s *sessionStop) now(deadline time.Duration) {
	select {
	case s.drain <- drainOrder{deadline: deadline}:
		s.end()
	default:
	}
}

// sessionAsked is a first session's line to its address's keeper (follow): the
// connections of each WELCOME it accepts (§9.1 "Connections per address"), and a poke to
// look at it.
type sessionAsked struct {
	connections *atomic.Uint64
	poke        chan<- struct{}
}

// runSession runs one session at addr to its end and reports its last state: nil once
// stopped, a *ConnectError when refused for good. failed hears of each failed attempt,
// so that the host name is resolved again at once; asked, given to an address's first
// session only, of each WELCOME's connections.
func (w *Worker) runSession(d *dialer, addr netip.AddrPort, ss *sessionStop, failed chan<- struct{}, asked *sessionAsked) error {
	sd := *d
	sd.addr, sd.heard = addr, new(atomic.Bool)
	s := w.newSession(d.url, addr)
	err := w.reconnectLoop(&sd, s, ss, failed, asked)
	if err != nil {
		s.set(State{Kind: Failed, Err: err})
	} else {
		s.set(State{Kind: Stopped})
	}
	return err
}

func (w *Worker) reconnectLoop(d *dialer, s *session, ss *sessionStop, failed chan<- struct{}, asked *sessionAsked) error {
	backoff := protocol.NewBackoff(randomSeed())
	stop := ss.stop
	for {
		if stop.Err() != nil {
			return nil
		}
		ws, raw, welcome, err := d.connect(stop)
		var cause error
		if err == nil {
			w.registered.Store(true)
			w.log.Info("vyx: registered", "gateway", d.url, "address", d.addr, "worker_id", w.cfg.ID, "connection", welcome.ConnectionID)
			s.set(State{Kind: Connected, ConnectionID: welcome.ConnectionID})
			if asked != nil {
				asked.connections.Store(welcome.Connections)
				select {
				case asked.poke <- struct{}{}:
				default:
				}
			}
			up := time.Now()
			c := &connection{ws: ws, raw: raw, log: w.log, welcome: welcome, heard: d.heard, routes: w.routeIDs,
				serve: w.serveStream, base: w.base}
			end := c.run(ss.drain, func() { s.set(State{Kind: Draining}) })
			if end.kind == endDrained || stop.Err() != nil {
				w.log.Info("vyx: drained and disconnected", "gateway", d.url, "address", d.addr)
				return nil
			}
			if end.kind == endClosed && end.code >= 0 && frame.CloseCode(end.code).IsPermanent() {
				err := &ConnectError{Kind: Refused, Code: frame.CloseCode(end.code), URL: d.url, Reason: end.reason}
				w.log.Warn("vyx: the gateway refused this worker; not reconnecting", "address", d.addr, "error", err)
				return err
			}
			if time.Since(up) >= protocol.BackoffStableMS*time.Millisecond {
				backoff.Reset()
			}
			cause = fmt.Errorf("%s", end)
		} else {
			if stop.Err() != nil {
				return nil // this attempt was cut short
			}
			if ce, ok := err.(*ConnectError); ok && ce.Permanent() {
				w.log.Error("vyx: registration refused; not retrying", "address", d.addr, "error", err)
				return err
			}
			cause = err
			w.mu.Lock()
			w.lastFailure = err
			w.mu.Unlock()
		}
		select {
		case failed <- struct{}{}:
		default:
		}
		delay := time.Duration(backoff.DelayMS()) * time.Millisecond
		w.log.Warn("vyx: reconnecting", "gateway", d.url, "address", d.addr, "cause", cause, "attempt", backoff.Attempt(), "delay", delay)
		s.set(State{Kind: Reconnecting, Attempt: backoff.Attempt(), Delay: delay, Err: cause})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stop.Done():
			t.Stop()
			return nil
		}
		s.set(State{Kind: Connecting})
	}
}
