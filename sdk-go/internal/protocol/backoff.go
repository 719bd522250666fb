package protocol

// SplitMix64 is the generator of the reconnect jitter (§9). The zero value is seeded 0.
type SplitMix64 struct{ state uint64 }

// NewSplitMix64 returns a generator seeded with seed.
func NewSplitMix64(seed uint64) *SplitMix64 { return &SplitMix64{state: seed} }

// Next returns the next 64-bit output.
//
//	protocol.NewSplitMix64(0).Next() // 16294208416658607535
func (g *SplitMix64) Next() uint64 {
	g.state += 0x9E3779B97F4A7C15
	z := g.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// EnvelopeMS is min(cap, base·2^n) in milliseconds, saturating (§9): 100, 200, ..., 6400,
// then 10000 for every n ≥ 7.
func EnvelopeMS(n uint32) uint64 {
	e := uint64(BackoffBaseMS)
	for i := uint32(0); i < n && e < BackoffCapMS; i++ {
		e *= 2
	}
	return min(e, BackoffCapMS)
}

// Backoff is the reconnect schedule of §9: a delay in [floor(e/2), e] for the n-th
// consecutive failure, one generator draw per delay. Seed it once per process (e.g. from
// crypto/rand) and keep it across sessions.
//
//	b := protocol.NewBackoff(seed)
//	time.Sleep(time.Duration(b.DelayMS()) * time.Millisecond) // n = 0, then n++
type Backoff struct {
	rng     SplitMix64
	attempt uint32
}

// NewBackoff returns a schedule at n = 0 with its generator seeded with seed.
func NewBackoff(seed uint64) *Backoff { return &Backoff{rng: SplitMix64{state: seed}} }

// Delay returns delay(n) for the given n, drawing one output of the generator.
func (b *Backoff) Delay(n uint32) uint64 {
	e := EnvelopeMS(n)
	lo := e / 2
	return lo + b.rng.Next()%(e-lo+1)
}

// DelayMS returns delay(n) for the current n and then increments n (saturating).
func (b *Backoff) DelayMS() uint64 {
	d := b.Delay(b.attempt)
	if b.attempt < ^uint32(0) {
		b.attempt++
	}
	return d
}

// Reset sets n back to 0: a session that had WELCOME and lasted stable_ms (§9).
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt is the current n.
func (b *Backoff) Attempt() uint32 { return b.attempt }
