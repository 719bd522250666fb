package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

func newFlags(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

// tally is what the load goroutines count; each records into its own and they are merged.
type tally struct {
	ops, errors int
	lat         []time.Duration
}

// run starts n goroutines of one (given its index) for secs seconds and prints the merged
// tally as JSON.
func run(n int, secs float64, one func(i int, deadline time.Time, t *tally)) {
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	start := time.Now()
	tallies := make([]tally, n)
	var wg sync.WaitGroup
	for i := range tallies {
		wg.Add(1)
		go func() { defer wg.Done(); one(i, deadline, &tallies[i]) }()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var all tally
	for _, t := range tallies {
		all.ops += t.ops
		all.errors += t.errors
		all.lat = append(all.lat, t.lat...)
	}
	slices.Sort(all.lat)
	pct := func(p float64) float64 {
		if len(all.lat) == 0 {
			return 0
		}
		return float64(all.lat[int(p*float64(len(all.lat)-1))]) / float64(time.Millisecond)
	}
	out, _ := json.Marshal(map[string]any{
		"ops": all.ops, "errors": all.errors, "secs": elapsed,
		"ops_s": float64(all.ops) / elapsed, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
	})
	fmt.Println(string(out))
}

func fail(t *tally, err error) {
	t.errors++
	fmt.Fprintln(os.Stderr, "load:", err)
}
