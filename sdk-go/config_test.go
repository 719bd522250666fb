package vyx

import (
	"testing"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

// The defaults are the ones every vyx SDK uses (spec/vectors/defaults.json, vyx-core's
// config module), and a Config left at zero gets them.
func TestDefaultsAreTheSpecs(t *testing.T) {
	var spec struct {
		MaxConcurrency   int   `json:"max_concurrency"`
		ConnectTimeoutMS int64 `json:"connect_timeout_ms"`
		DrainTimeoutMS   int64 `json:"drain_timeout_ms"`
		ResolveMS        int64 `json:"resolve_interval_ms"`
	}
	vectors.Load(t, "defaults.json", &spec)
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	if DefaultMaxConcurrency != spec.MaxConcurrency || DefaultConnectTimeout != ms(spec.ConnectTimeoutMS) ||
		DefaultDrainTimeout != ms(spec.DrainTimeoutMS) || DefaultResolveInterval != ms(spec.ResolveMS) {
		t.Errorf("defaults %d %v %v, spec %+v", DefaultMaxConcurrency, DefaultConnectTimeout, DefaultDrainTimeout, spec)
	}
	w, err := NewWorker(Config{Connect: []string{"ws://127.0.0.1:1"}, ID: "t:defaults"})
	if err != nil {
		t.Fatal(err)
	}
	if w.cfg.MaxConcurrency != DefaultMaxConcurrency || w.cfg.ConnectTimeout != DefaultConnectTimeout ||
		w.cfg.DrainTimeout != DefaultDrainTimeout || w.cfg.ResolveInterval != DefaultResolveInterval {
		t.Errorf("a zero Config got %d %v %v", w.cfg.MaxConcurrency, w.cfg.ConnectTimeout, w.cfg.DrainTimeout)
	}
}
