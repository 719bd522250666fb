// vyx-bench-go: the servers and load clients of bench/run's WebSocket and gRPC rows.
//
//	vyx-bench-go ws-server   [-listen ADDR]   # coder/websocket echo at GET /ws
//	vyx-bench-go grpc-server [-listen ADDR]   # a small gRPC TestService (EmptyCall, UnaryCall)
//	vyx-bench-go ws-load   -url ws://HOST/ws -conns N -secs S -size B
//	vyx-bench-go grpc-load -addr HOST:PORT -conns N -streams M -secs S -size B
//
// A server registers with a vyx gateway (VYX_CONNECT, VYX_WORKER_ID) through the Go SDK,
// or, with -listen, serves the same handler with net/http (HTTP/1.1 for WebSocket, h2c for
// gRPC) for nginx to proxy: both sides run the same handler code. It prints
// `listening http://ADDR` once it serves. A load client prints one JSON line: operations
// (echoed messages or completed calls), errors, seconds, and latency percentiles.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vyx-bench-go ws-server|grpc-server|ws-load|grpc-load [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "ws-server":
		err = serve(args, "GET /ws", wsEcho(), false)
	case "grpc-server":
		err = serve(args, "POST /{*rest}", grpcService(), true)
	case "ws-load":
		err = wsLoad(args)
	case "grpc-load":
		err = grpcLoad(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vyx-bench-go:", err)
		os.Exit(1)
	}
}

// serve runs handler behind vyx on pattern, or with net/http on -listen (h2c only when
// h2c: grpc-go's ServeHTTP wants HTTP/2).
func serve(args []string, pattern string, handler http.Handler, h2c bool) error {
	flags := newFlags("server")
	listen := flags.String("listen", "", "serve with net/http on this address instead of registering with vyx")
	if err := flags.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: handler}
		if h2c {
			srv.Protocols = new(http.Protocols)
			srv.Protocols.SetUnencryptedHTTP2(true)
		}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		fmt.Printf("listening http://%s\n", ln.Addr())
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			return err
		}
		return nil
	}
	w, err := vyx.NewWorker(vyx.Config{
		Connect: strings.Split(os.Getenv("VYX_CONNECT"), ","),
		ID:      os.Getenv("VYX_WORKER_ID"),
	})
	if err != nil {
		return err
	}
	w.Handle(pattern, handler)
	return w.Start(ctx)
}
