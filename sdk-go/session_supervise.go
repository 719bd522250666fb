package vyx

// The supervisor (core/src/session/supervise.rs): connect, serve, and reconnect with the
// backoff of §9 until the worker drains or is refused for good.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

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
