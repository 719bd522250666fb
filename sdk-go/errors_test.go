package vyx

// The public errors with errors.Is/As, the kinds' names, and Start's error for a worker that
// never connected.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

func TestKindNames(t *testing.T) {
	for k, want := range map[fmt.Stringer]string{
		Transient: "transient", Unauthorized: "unauthorized", NoEndpoint: "no_endpoint",
		Rejected: "rejected", Refused: "refused", ConnectKind(9): "ConnectKind(9)",
		Connecting: "connecting", Connected: "connected", Reconnecting: "reconnecting",
		Draining: "draining", Stopped: "stopped", Failed: "failed", StateKind(-1): "StateKind(-1)",
		ResetCode(1): "1 cancel", CloseCode(4001): "4001 bad_hello",
	} {
		if got := fmt.Sprint(k); got != want {
			t.Errorf("fmt.Sprint(%#v) = %q, want %q", k, got, want)
		}
	}
}

func TestConnectErrorIs(t *testing.T) {
	sentinels := []error{ErrUnauthorized, ErrNoEndpoint, ErrRejected, ErrRefused}
	for kind, want := range map[ConnectKind]error{
		Transient: nil, Unauthorized: ErrUnauthorized, NoEndpoint: ErrNoEndpoint,
		Rejected: ErrRejected, Refused: ErrRefused,
	} {
		// Wrapped as Start's callers may wrap it.
		err := fmt.Errorf("serving: %w", &ConnectError{Kind: kind, Code: 4001})
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == want) {
				t.Errorf("errors.Is(%s error, %q) = %v", kind, s, got)
			}
		}
		var ce *ConnectError
		if !errors.As(err, &ce) || ce.Kind != kind {
			t.Errorf("errors.As(%s error) = %v", kind, ce)
		}
	}
}

func TestStreamErrorIs(t *testing.T) {
	lost := fmt.Errorf("read: %w", errConnectionLost)
	if !errors.Is(lost, ErrConnectionLost) || errors.Is(lost, ErrStreamReset) {
		t.Errorf("a lost connection: %v", lost)
	}
	reset := &StreamError{Code: ResetCode(1), Reason: "client gone"}
	if !errors.Is(reset, ErrStreamReset) || errors.Is(reset, ErrConnectionLost) {
		t.Errorf("a reset: %v", reset)
	}
}

// quietWorker is a worker on connect whose states go to states (buffered: none dropped here).
func quietWorker(t *testing.T, connect string, states chan State) *Worker {
	t.Helper()
	w, err := NewWorker(Config{Connect: []string{connect}, ID: "test:go", OnState: func(s State) { states <- s },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Get("/a", func(http.ResponseWriter, *http.Request) {})
	return w
}

// A closed port: the worker retries until its context ends, then Start says it never
// connected and why, down to the dial's error.
func TestStartNeverConnectedClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	states := make(chan State, 64)
	w := quietWorker(t, "ws://"+addr, states)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	for s := range states {
		if s.Kind == Reconnecting { // the first attempt has failed
			break
		}
	}
	cancel()
	err = <-done
	if !errors.Is(err, ErrNeverConnected) {
		t.Fatalf("Start = %v, want ErrNeverConnected", err)
	}
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Kind != Transient || ce.Permanent() {
		t.Fatalf("Start = %v, want a transient *ConnectError inside", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Start = %v, want the dial's *net.OpError (ECONNREFUSED) inside", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Start = %q, want the address and the last failure named", err)
	}
	if got := w.State(); got.Kind != Failed || !errors.Is(got.Err, ErrNeverConnected) {
		t.Fatalf("State() = %v, want failed: never connected", got)
	}
}

// A gateway that refuses the token: Start stops at once with ErrUnauthorized.
func TestStartUnauthorized(t *testing.T) {
	g := gwtest.New(t)
	g.Answer = func(_ int, w http.ResponseWriter, _ *http.Request) (bool, bool) {
		http.Error(w, "unknown token", http.StatusUnauthorized)
		return false, false
	}
	w := quietWorker(t, g.URL(), make(chan State, 64))
	err := w.Start(context.Background())
	if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNeverConnected) || errors.Is(err, ErrRefused) {
		t.Fatalf("Start = %v, want ErrUnauthorized only", err)
	}
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Status != 401 || ce.Reason != "unknown token" || errors.Unwrap(ce) != nil {
		t.Fatalf("Start = %#v, want HTTP 401 with the gateway's reason and nothing under it", err)
	}
	if fmt.Sprint(ce.Kind) != "unauthorized" {
		t.Fatalf("kind prints as %q", fmt.Sprint(ce.Kind))
	}
	if n := g.Attempts(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestSecondStartIsErrAlreadyStarted(t *testing.T) {
	g := gwtest.New(t)
	g.Answer = func(_ int, w http.ResponseWriter, _ *http.Request) (bool, bool) {
		http.Error(w, "unknown token", http.StatusUnauthorized)
		return false, false
	}
	w := quietWorker(t, g.URL(), make(chan State, 64))
	if err := w.Start(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("first Start = %v, want ErrUnauthorized", err)
	}
	// A worker runs once, as in every SDK: the second Start does not dial again.
	if err := w.Start(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start = %v, want ErrAlreadyStarted", err)
	}
	if n := g.Attempts(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}
