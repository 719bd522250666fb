// Package readme holds the test that builds the Go examples of the READMEs.
package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// block is a fenced Go block: ```go for a whole program, ```go fragment for a piece of one.
var block = regexp.MustCompile("(?ms)^```go((?:[ \t][^\n]*)?)\n(.*?)^```$")

// TestReadmeExamplesBuild builds every whole Go program in the top README and sdk-go's, each
// as its own module that requires this SDK (by a replace directive to this checkout), as a
// user following the README would. Fragments (```go fragment) are pieces of such a program
// and are not built alone; any other block fails, so a new example cannot go untested.
func TestReadmeExamplesBuild(t *testing.T) {
	sdk, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(sdk, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	for _, readme := range []string{"../../../README.md", "../../README.md"} {
		text, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatchIndex(text, -1) {
			info := strings.TrimSpace(string(text[m[2]:m[3]]))
			code := text[m[4]:m[5]]
			where := readme + ":" + strconv.Itoa(1+strings.Count(string(text[:m[4]]), "\n"))
			switch {
			case info == "fragment":
				continue
			case info != "" || !strings.HasPrefix(string(code), "package main"):
				t.Errorf("%s: a whole program (package main) or ```go fragment", where)
				continue
			}
			dir := t.TempDir()
			goMod := "module example.com/readme\n\ngo 1.23\n\nrequire github.com/vyx-dev/vyx/sdk-go v0.0.0\n\n" +
				"replace github.com/vyx-dev/vyx/sdk-go => " + sdk + "\n"
			for name, content := range map[string][]byte{"go.mod": []byte(goMod), "go.sum": sum, "main.go": code} {
				if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "example"), ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: go build: %v\n%s", where, err, out)
			}
			built++
		}
	}
	if built == 0 {
		t.Fatal("no Go example built")
	}
}
