package frame

import (
	"strings"
	"testing"
)

const helloBase = `"protocol":1,"worker_id":"a","max_concurrency":1,"routes":[]`

// The rules of §3.8 beyond the malformed vectors: each payload decodes (ok) or not.
func TestStrictJSON(t *testing.T) {
	for _, c := range []struct {
		json string
		ok   bool
	}{
		{`{` + helloBase + `}`, true},
		{` {` + helloBase + `} ` + "\n", true},
		{"\ufeff{" + helloBase + `}`, false},
		{`{` + helloBase + `,"x":{"a":1,"a":2}}`, false},
		{`{` + helloBase + `,"x":[{"a":1,"a":2}]}`, false},
		{`{` + helloBase + `,"x":"\ud800"}`, false},
		{`{` + helloBase + `,"x":"x\udc00"}`, false},
		{`{` + helloBase + `,"x":"\ud800\u0041"}`, false},
		{`{` + helloBase + `,"x":"\ud83d\ude00"}`, true},
		{`{` + helloBase + `,"x":-0.5e-3,"y":1e-400,"z":-1,"w":1e308}`, true},
		{`{` + helloBase + `,"x":1e400}`, false},
		{`{` + helloBase + `,"x":-1e400}`, false},
		{`{` + helloBase + `,"x":1` + strings.Repeat("0", 400) + `}`, false},
		{`{` + helloBase + `,"x":01}`, false},
		{`{` + helloBase + `,"x":"` + "\xff" + `"}`, false},
		{`{` + helloBase + `,"worker\u005fid":"a"}`, false},
		{`{` + helloBase + `,"Worker_Id":7}`, true},
		{`{` + helloBase + `,"instance":null,"sdk":null,"labels":null}`, true},
		{`{` + helloBase + `,"labels":{"a":null}}`, false},
		{`{` + helloBase + `,"instance":1}`, false},
		{`{"protocol":-0,"worker_id":"a","max_concurrency":1,"routes":[]}`, false},
		{`{"protocol":1.0,"worker_id":"a","max_concurrency":1,"routes":[]}`, false},
		{`{"protocol":1e0,"worker_id":"a","max_concurrency":1,"routes":[]}`, false},
		{`{"protocol":18446744073709551616,"worker_id":"a","max_concurrency":1,"routes":[]}`, false},
		{`{"protocol":18446744073709551615,"worker_id":"a","max_concurrency":1,"routes":[]}`, true},
		{`{"protocol":null,"worker_id":"a","max_concurrency":1,"routes":[]}`, false},
		{`{` + helloBase + `}x`, false},
		{`{` + helloBase + `,}`, false},
		{`{` + helloBase + `,"x":[1,]}`, false},
		{`{` + helloBase + `,"x":"a` + "\n" + `"}`, false},
		{`{` + helloBase + `,"x":` + strings.Repeat("[", 126) + strings.Repeat("]", 126) + `}`, true},
		{`{` + helloBase + `,"x":` + strings.Repeat("[", 127) + strings.Repeat("]", 127) + `}`, false},
	} {
		_, err := DecodeHello([]byte(c.json))
		if (err == nil) != c.ok {
			t.Errorf("%q: err = %v, want ok = %v", c.json, err, c.ok)
		}
	}
}

func TestEmission(t *testing.T) {
	h := &Hello{Protocol: 1, WorkerID: "go:api", SDK: "vyx-go/0.1.0", MaxConcurrency: 8,
		Routes: []Route{{ID: 0, Method: "GET", Path: "/caf\u00e9/{x}"}},
		Labels: map[string]string{"z": "\"<&>\n", "a": "b"}}
	want := `{"protocol":1,"worker_id":"go:api","instance":"","sdk":"vyx-go/0.1.0","max_concurrency":8,` +
		`"routes":[{"id":0,"method":"GET","path":"/café/{x}"}],"labels":{"a":"b","z":"\"<&>\n"}}`
	if got := string(h.Encode()[HeaderSize:]); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
