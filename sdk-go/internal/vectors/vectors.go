// Package vectors reads spec/vectors/ for the tests of every package of the module.
package vectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Path is spec/vectors/<name>, found from this file's path rather than from the test's
// working directory (which is its package's).
func Path(name string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "..", "spec", "vectors", name)
}

// Load decodes spec/vectors/<name> into v.
//
//	var file struct{ Vectors []struct{ Hex string } }
//	vectors.Load(t, "frames.json", &file)
func Load(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
