package grpcinterop

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The two TestService methods connectService answers, by their gRPC paths.
const (
	unaryCall  = "/grpc.testing.TestService/UnaryCall"
	streamCall = "/grpc.testing.TestService/StreamingOutputCall"
)

// connectService is a connectrpc handler pair on the interop messages: UnaryCall answers
// a payload of the asked size (or the asked status), the client's x-user as its username,
// a header and a trailer; StreamingOutputCall answers one message per response parameter.
func connectService() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(unaryCall, connect.NewUnaryHandler(unaryCall,
		func(_ context.Context, req *connect.Request[testgrpc.SimpleRequest]) (*connect.Response[testgrpc.SimpleResponse], error) {
			if s := req.Msg.GetResponseStatus(); s.GetCode() != 0 {
				return nil, connect.NewError(connect.Code(s.GetCode()), errors.New(s.GetMessage()))
			}
			res := connect.NewResponse(&testgrpc.SimpleResponse{
				Payload:  &testgrpc.Payload{Body: make([]byte, req.Msg.GetResponseSize())},
				Username: req.Header().Get("x-user"),
			})
			res.Header().Set("x-handler", "connect")
			res.Trailer().Set("x-trailer", "done")
			return res, nil
		}))
	mux.Handle(streamCall, connect.NewServerStreamHandler(streamCall,
		func(_ context.Context, req *connect.Request[testgrpc.StreamingOutputCallRequest], stream *connect.ServerStream[testgrpc.StreamingOutputCallResponse]) error {
			for _, p := range req.Msg.GetResponseParameters() {
				res := &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}
				if err := stream.Send(res); err != nil {
					return err
				}
			}
			return nil
		}))
	return mux
}

// sizes are the streamed responses' sizes each client asks for.
var sizes = []int32{1, 10, 100_000}

// TestConnectHandlerThroughVyx mounts connectService on the Go SDK and calls it through
// the gateway with grpc-go's client (the gRPC protocol over h2c) and with connect's own
// (the Connect protocol over HTTP/1.1 and h2c): unary with metadata both ways, server
// streaming, and an error status.
func TestConnectHandlerThroughVyx(t *testing.T) {
	addr := startGateway(t, plaintext())
	serve(t, addr, plaintext(), "POST /grpc.testing.TestService/{*method}", connectService())

	t.Run("grpc-go client", func(t *testing.T) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(plaintext().creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		client := testgrpc.NewTestServiceClient(cc)
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user", "ana"), wait)
		defer cancel()
		var header, trailer metadata.MD
		res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1000}, grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetPayload().GetBody()) != 1000 || res.GetUsername() != "ana" {
			t.Errorf("response %d bytes, username %q", len(res.GetPayload().GetBody()), res.GetUsername())
		}
		if h, tr := header.Get("x-handler"), trailer.Get("x-trailer"); len(h) != 1 || h[0] != "connect" || len(tr) != 1 || tr[0] != "done" {
			t.Errorf("header %v, trailer %v", header, trailer)
		}

		stream, err := client.StreamingOutputCall(ctx, streamRequest())
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, int32(len(m.GetPayload().GetBody())))
		}
		checkSizes(t, got)

		_, err = client.UnaryCall(ctx, statusRequest())
		if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "not here" {
			t.Errorf("status %v", err)
		}
	})

	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for name, hc := range map[string]*http.Client{
		"connect client over HTTP/1.1": {},
		"connect client over h2c":      {Transport: h2c},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			unary := connect.NewClient[testgrpc.SimpleRequest, testgrpc.SimpleResponse](hc, "http://"+addr+unaryCall)
			req := connect.NewRequest(&testgrpc.SimpleRequest{ResponseSize: 1000})
			req.Header().Set("x-user", "ana")
			res, err := unary.CallUnary(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Msg.GetPayload().GetBody()) != 1000 || res.Msg.GetUsername() != "ana" {
				t.Errorf("response %d bytes, username %q", len(res.Msg.GetPayload().GetBody()), res.Msg.GetUsername())
			}
			if h, tr := res.Header().Get("x-handler"), res.Trailer().Get("x-trailer"); h != "connect" || tr != "done" {
				t.Errorf("header %q, trailer %q", h, tr)
			}

			streaming := connect.NewClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse](hc, "http://"+addr+streamCall)
			stream, err := streaming.CallServerStream(ctx, connect.NewRequest(streamRequest()))
			if err != nil {
				t.Fatal(err)
			}
			var got []int32
			for stream.Receive() {
				got = append(got, int32(len(stream.Msg().GetPayload().GetBody())))
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			_ = stream.Close()
			checkSizes(t, got)

			_, err = unary.CallUnary(ctx, connect.NewRequest(statusRequest()))
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound || ce.Message() != "not here" {
				t.Errorf("error %v", err)
			}
		})
	}
}

func streamRequest() *testgrpc.StreamingOutputCallRequest {
	req := &testgrpc.StreamingOutputCallRequest{}
	for _, n := range sizes {
		req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: n})
	}
	return req
}

func statusRequest() *testgrpc.SimpleRequest {
	return &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "not here"}}
}

func checkSizes(t *testing.T, got []int32) {
	t.Helper()
	if len(got) != len(sizes) {
		t.Fatalf("streamed sizes %v, want %v", got, sizes)
	}
	for i := range sizes {
		if got[i] != sizes[i] {
			t.Fatalf("streamed sizes %v, want %v", got, sizes)
		}
	}
}
