package vyx

// Test helpers: a Worker started against a scripted gateway, and its states.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// startWorker starts w against g and stops it when the test ends; states are recorded.
func startWorker(t testing.TB, g *gwtest.Gateway, setup func(*Worker), cfg Config) (*Worker, *stateLog, chan error) {
	t.Helper()
	states := &stateLog{changed: make(chan struct{}, 1)}
	cfg.Connect, cfg.OnState = []string{g.URL()}, states.add
	if cfg.ID == "" {
		cfg.ID = "test:go"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup(w)
	done := make(chan error, 1)
	go func() { done <- w.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), gwtest.Wait)
		defer cancel()
		_ = w.Shutdown(ctx)
	})
	return w, states, done
}

type stateLog struct {
	mu      sync.Mutex
	states  []State
	changed chan struct{}
}

func (l *stateLog) add(s State) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *stateLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.states {
		out = append(out, s.Kind.String())
	}
	return out
}

// waitFor waits until the log holds a state of kind and returns it.
func (l *stateLog) waitFor(t *testing.T, kind StateKind) State {
	t.Helper()
	deadline := time.After(gwtest.Wait)
	for {
		l.mu.Lock()
		for _, s := range l.states {
			if s.Kind == kind {
				l.mu.Unlock()
				return s
			}
		}
		l.mu.Unlock()
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("no %s state; got %v", kind, l.kinds())
		}
	}
}

// jsonOf decodes a body as JSON.
func jsonOf(b []byte) any {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return v
}
