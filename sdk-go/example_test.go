package vyx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// A whole worker: routes, then Start until SIGTERM or Ctrl-C drains it.
func ExampleWorker() {
	w, err := vyx.NewWorker(vyx.Config{
		Connect: []string{"ws://127.0.0.1:9000"}, // or VYX_CONNECT
		ID:      "go:hello",                      // or VYX_WORKER_ID
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
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://127.0.0.1:9000"}, ID: "go:api"})
	if err != nil {
		log.Fatal(err)
	}
	w.Handle("/api/{*rest}", mux) // every method; Go's {rest...} is accepted too
	_ = w.Start(context.Background())
}

// A streamed response: each Flush sends what was written so far.
func ExampleWorker_Get_streaming() {
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://127.0.0.1:9000"}, ID: "go:ticks"})
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
	_, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://127.0.0.1:9000"}, ID: "not a worker id"})
	fmt.Println(err)
	// Output: vyx: worker id "not a worker id" must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ / - (set Config.ID or VYX_WORKER_ID)
}

// Every connection-state change, in order, on a goroutine of its own.
func ExampleConfig_onState() {
	cfg := vyx.Config{ID: "go:api", OnState: func(s vyx.State) {
		if s.Kind == vyx.Reconnecting {
			log.Printf("vyx: retry %d in %s after %v", s.Attempt, s.Delay, s.Err)
		}
	}}
	_ = cfg
	fmt.Println(vyx.Connecting, vyx.Connected, vyx.Reconnecting, vyx.Draining, vyx.Stopped, vyx.Failed)
	// Output: connecting connected reconnecting draining stopped failed
}

// Drain on demand, as http.Server.Shutdown: in-flight requests get until ctx's deadline.
func ExampleWorker_Shutdown() {
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://127.0.0.1:9000"}, ID: "go:api"})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Shutdown(ctx) // e.g. on a deploy hook
	}()
	if err := w.Start(context.Background()); err != nil {
		log.Print(err)
	}
}

// A gateway that refuses the token: Start returns at once, and the error says why.
func ExampleConnectError() {
	gw := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "unknown token", http.StatusUnauthorized)
	}))
	defer gw.Close()
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://" + gw.Listener.Addr().String()}, ID: "go:api",
		Token: "wrong", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	err = w.Start(context.Background())
	fmt.Println(errors.Is(err, vyx.ErrUnauthorized))
	var ce *vyx.ConnectError
	if errors.As(err, &ce) {
		fmt.Println(ce.Kind, ce.Status, ce.Reason, ce.Permanent())
	}
	// Output:
	// true
	// unauthorized 401 unknown token true
}

// Nothing listens at the address: the worker retries until its context ends, then Start
// says that it never connected, and why.
func ExampleErrNeverConnected() {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{"ws://" + addr}, ID: "go:api",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnState: func(s vyx.State) {
			if s.Kind == vyx.Reconnecting {
				cancel() // give up after the first failure
			}
		}})
	if err != nil {
		log.Fatal(err)
	}
	err = w.Start(ctx)
	var ce *vyx.ConnectError
	fmt.Println(errors.Is(err, vyx.ErrNeverConnected), errors.As(err, &ce) && ce.Kind == vyx.Transient)
	fmt.Println(errors.Is(err, syscall.ECONNREFUSED)) // the dial's error is wrapped too
	// Output:
	// true true
	// true
}

// Why a handler's request was cancelled: the gateway reset the stream (the client went
// away, a timeout), or the connection was lost.
func ExampleStreamError() {
	handler := func(rw http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cause := context.Cause(r.Context())
		var se *vyx.StreamError
		if errors.Is(cause, vyx.ErrStreamReset) && errors.As(cause, &se) {
			log.Printf("reset by the gateway: %s", se.Code) // e.g. "1 cancel"
		} else if errors.Is(cause, vyx.ErrConnectionLost) {
			log.Print("the connection to the gateway was lost")
		}
	}
	_ = handler
}

// A response head no HTTP hop can carry is answered 500 instead; the Flush (or Write)
// that sends the head returns why.
func ExampleInvalidHeadError() {
	handler := func(rw http.ResponseWriter, r *http.Request) {
		rw.Header()["Bad Name"] = []string{"x"} // not a token
		err := http.NewResponseController(rw).Flush()
		var ih *vyx.InvalidHeadError
		if errors.As(err, &ih) {
			log.Print(ih.Why)
		}
	}
	_ = handler
}

// The decoded query, pairs in order and repeats kept, as every vyx SDK decodes it.
func ExampleParseQuery() {
	for _, p := range vyx.ParseQuery("tag=a&tag=b+c&q=%E2%9C%93&flag") {
		fmt.Printf("%s=%q ", p.Name, p.Value)
	}
	fmt.Println()
	// Output: tag="a" tag="b c" q="✓" flag=""
}
