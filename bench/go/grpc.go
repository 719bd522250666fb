package main

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// testService answers UnaryCall with a payload of the asked size.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func grpcService() *grpc.Server {
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, testService{})
	return s
}

// grpcLoad opens -conns client connections and runs -streams goroutines on each, each
// making UnaryCalls of -size bytes each way, one after another, for -secs.
func grpcLoad(args []string) error {
	flags := newFlags("grpc-load")
	addr := flags.String("addr", "", "HOST:PORT (h2c)")
	conns := flags.Int("conns", 4, "HTTP/2 connections")
	streams := flags.Int("streams", 16, "calls in flight on each connection")
	secs := flags.Float64("secs", 5, "seconds")
	size := flags.Int("size", 64, "payload bytes each way")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("-addr is required")
	}
	clients := make([]testgrpc.TestServiceClient, *conns)
	for i := range clients {
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		clients[i] = testgrpc.NewTestServiceClient(cc)
	}
	req := &testgrpc.SimpleRequest{ResponseSize: int32(*size), Payload: &testgrpc.Payload{Body: make([]byte, *size)}}
	run(*conns**streams, *secs, func(i int, deadline time.Time, t *tally) {
		client := clients[i%len(clients)]
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			_, err := client.UnaryCall(ctx, req)
			cancel()
			if err != nil {
				fail(t, err)
				return
			}
			t.ops++
			t.lat = append(t.lat, time.Since(start))
		}
	})
	return nil
}
