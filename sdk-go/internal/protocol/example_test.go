package protocol_test

import (
	"fmt"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

func ExampleBackoff() {
	b := protocol.NewBackoff(0) // seed from crypto/rand in a real worker
	for i := 0; i < 4; i++ {
		fmt.Print(b.DelayMS(), " ")
	}
	fmt.Println()
	// Output: 96 126 321 575
}

func ExampleValidateHello() {
	h := &frame.Hello{Protocol: 1, WorkerID: "go:api", MaxConcurrency: 64,
		Routes: []frame.Route{{ID: 0, Method: "GET", Path: "/a/{id}"}, {ID: 1, Method: "GET", Path: "/a/{key}"}}}
	fmt.Println(protocol.ValidateHello(h, "go:api"))
	// Output: 4001 bad_hello: route 1: GET /a/{}: declared twice
}
