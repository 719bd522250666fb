// A vyx worker in Go: GET /go/hello/{name} answers JSON, POST /go/echo streams the body
// back. The routes of the Rust example (examples/rust/hello), under the prefix /go so that
// both run behind one gateway (examples/vyx.yaml). The handlers are a plain http.ServeMux:
//
//	vyx &                                  # a gateway in dev mode on 127.0.0.1:9000
//	go run ./examples/go/hello             # this worker (from examples/go/hello's module)
//	curl localhost:9000/go/hello/ada       # {"hello":"ada","lang":"go"}
//
// Settings come from VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN, so the same binary runs
// anywhere without a code change. SIGTERM and Ctrl-C drain it. With -listen ADDR it serves
// the same mux with net/http instead (the benchmark's baseline).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

func routes(prefix string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := json.Marshal(map[string]string{"hello": r.PathValue("name"), "lang": "go"})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	// Streams the request body back as it arrives (nothing is buffered), same content-type.
	mux.HandleFunc("POST "+prefix+"/echo", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				http.NewResponseController(w).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	return mux
}

func env(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func main() {
	listen := flag.String("listen", "", "serve with net/http on this address instead of registering with vyx")
	flag.Parse()
	prefix, set := os.LookupEnv("HELLO_PREFIX") // "" serves /hello/{name} (the benchmark)
	if !set {
		prefix = "/go"
	}
	mux := routes(prefix)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if *listen != "" {
		srv := &http.Server{Addr: *listen, Handler: mux}
		go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
		log.Printf("listening http://%s", *listen)
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
		return
	}

	w, err := vyx.NewWorker(vyx.Config{
		Connect: strings.Split(env("VYX_CONNECT", "ws://127.0.0.1:9000"), ","),
		ID:      env("VYX_WORKER_ID", "go:hello"),
		OnState: func(s vyx.State) { log.Printf("go:hello %s", s) },
	})
	if err != nil {
		log.Fatal(err)
	}
	// The mux routes by itself; the worker claims the prefix for it.
	w.Handle("GET "+prefix+"/hello/{name}", mux)
	w.Handle("POST "+prefix+"/echo", mux)
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
}
