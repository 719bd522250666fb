package vyx

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// The canonical form of the lower-case header names requests arrive with ("x-request-id" →
// "X-Request-Id"), remembered: http.CanonicalHeaderKey allocates for every name outside
// net/textproto's short list of common ones, and the same few names come with every request.
// Readers take no lock: the map is replaced, never changed, when a name is added.
var (
	canonicalKeys   atomic.Pointer[map[string]string]
	canonicalKeysMu sync.Mutex
)

// maxCanonicalKeys bounds the remembered names: a client sending a new name with every
// request must not grow the worker's memory.
const maxCanonicalKeys = 256

// canonicalKey is http.CanonicalHeaderKey(name).
func canonicalKey(name string) string {
	if m := canonicalKeys.Load(); m != nil {
		if k, ok := (*m)[name]; ok {
			return k
		}
	}
	k := http.CanonicalHeaderKey(name)
	if k == name {
		return k // canonical already, or a common name: no allocation to save
	}
	canonicalKeysMu.Lock()
	defer canonicalKeysMu.Unlock()
	old := canonicalKeys.Load()
	if old != nil && len(*old) >= maxCanonicalKeys {
		return k
	}
	m := make(map[string]string, 1+len(ptrMap(old)))
	for n, c := range ptrMap(old) {
		m[n] = c
	}
	m[name] = k
	canonicalKeys.Store(&m)
	return k
}

func ptrMap(m *map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return *m
}
