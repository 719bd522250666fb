// Package vyx is the Go SDK of vyx: a Worker serves net/http handlers through a vyx
// gateway, which it dials (a pull model: the worker needs no listening port).
//
//	w, err := vyx.NewWorker(vyx.Config{ID: "go:api"}) // VYX_CONNECT names the gateway
//	if err != nil {
//		log.Fatal(err)
//	}
//	w.Get("/hello/{name}", func(rw http.ResponseWriter, r *http.Request) {
//		fmt.Fprintf(rw, "hello %s\n", r.PathValue("name"))
//	})
//	w.Handle("/api/{*rest}", mux) // any http.Handler: ServeMux, chi, gin
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	if err := w.Start(ctx); err != nil { // drains on SIGTERM, then returns nil
//		log.Fatal(err)
//	}
//
// Handlers get an *http.Request as http.Server would build it behind a proxy (the full
// original path and query, Host, RemoteAddr from the forwarding headers, a streamed
// Body) and an http.ResponseWriter that supports Flush and http.ResponseController.
//
// Start returns nil after a drain. Its errors work with errors.Is and errors.As: a
// *ConnectError when the gateway refuses the worker for good (ErrUnauthorized,
// ErrNoEndpoint, ErrRejected, ErrRefused), and ErrNeverConnected, wrapping the last
// attempt, when the worker stopped before it ever registered.
//
// The package is a pure-Go mirror of the Rust core (core/src/, file for file): the codec
// is internal/frame, the protocol rules without a socket internal/protocol, the session on
// a WebSocket is session*.go and transport*.go, and the net/http host worker.go and http.go.
package vyx
