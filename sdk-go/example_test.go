package vyx_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// A whole worker: routes, then Start until SIGTERM or Ctrl-C drains it.
func ExampleWorker() {
	w, err := vyx.NewWorker(vyx.Config{
		Connect: "ws://127.0.0.1:9000", // or VYX_CONNECT
		ID:      "go:hello",            // or VYX_WORKER_ID
		OnState: func(s vyx.State) { log.Printf("vyx: %s", s) },
	})
	if err != nil {
		log.Fatal(err)
	}
	w.Get("/hello/{name}", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "hello %s\n", r.PathValue("name"))
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
}

// An existing app under a prefix: the mux sees the full original path.
func ExampleWorker_Handle() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users/{id}", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "user %s at %s\n", r.PathValue("id"), r.URL.Path)
	})
	w, err := vyx.NewWorker(vyx.Config{Connect: "ws://127.0.0.1:9000", ID: "go:api"})
	if err != nil {
		log.Fatal(err)
	}
	w.Handle("/api/{*rest}", mux) // every method; Go's {rest...} is accepted too
	_ = w.Start(context.Background())
}

// A streamed response: each Flush sends what was written so far.
func ExampleWorker_Get_streaming() {
	w, err := vyx.NewWorker(vyx.Config{Connect: "ws://127.0.0.1:9000", ID: "go:ticks"})
	if err != nil {
		log.Fatal(err)
	}
	w.Get("/ticks", func(rw http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(rw)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(rw, "tick %d\n", i)
			if err := rc.Flush(); err != nil {
				return // the client went away: r.Context() is cancelled too
			}
		}
	})
	_ = w.Start(context.Background())
}

func ExampleNewWorker() {
	_, err := vyx.NewWorker(vyx.Config{Connect: "ws://127.0.0.1:9000", ID: "not a worker id"})
	fmt.Println(err)
	// Output: vyx: worker id "not a worker id" must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ / - (set Config.ID or VYX_WORKER_ID)
}
