package grpcinterop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/orca"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// wait bounds every wait on the gateway and the worker; a bound, not a timing assertion.
const wait = 30 * time.Second

// interopCases are grpc-go's interop client test cases (interop/client/client.go) this
// setup runs, by their names there; the package doc lists the others and why.
var interopCases = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, cc *grpc.ClientConn, addr string)
}{
	{"empty_unary", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"large_unary", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"client_streaming", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"server_streaming", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"ping_pong", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"empty_stream", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"timeout_on_sleeping_server", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_begin", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_first_response", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"status_code_and_message", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"special_status_message", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"custom_metadata", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"unimplemented_method", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoUnimplementedMethod(ctx, cc)
	}},
	{"unimplemented_service", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ string) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	}},
	{"orca_per_rpc", func(ctx context.Context, t *testing.T, _ *grpc.ClientConn, addr string) {
		// The interop client's service config for this case: its ORCA-reading LB policy.
		cc := dial(t, addr, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"test_backend_metrics_load_balancer": {}}]}`))
		interop.DoORCAPerRPCTest(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"rpc_soak", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, addr string) {
		c := soak(addr)
		c.ChannelForTest = func() (*grpc.ClientConn, func()) { return cc, func() {} }
		interop.DoSoakTest(ctx, c)
	}},
	{"channel_soak", func(ctx context.Context, t *testing.T, _ *grpc.ClientConn, addr string) {
		c := soak(addr)
		c.ChannelForTest = func() (*grpc.ClientConn, func()) {
			cc := dial(t, addr)
			return cc, func() { cc.Close() }
		}
		interop.DoSoakTest(ctx, c)
	}},
}

// TestInterop runs each case against one gateway and one worker, on one client
// connection (orca_per_rpc and channel_soak make their own).
func TestInterop(t *testing.T) {
	addr := startGateway(t)
	startWorker(t, addr)
	cc := dial(t, addr)
	for _, c := range interopCases {
		t.Run(c.name, func(t *testing.T) {
			failOn(t)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c.run(ctx, t, cc, addr)
		})
	}
}

// soak is the interop client's soak configuration, made small: 10 large-unary RPCs, none
// allowed to fail. The latency bound is the wait, so no timing is asserted.
func soak(addr string) interop.SoakTestConfig {
	return interop.SoakTestConfig{
		RequestSize: 271828, ResponseSize: 314159,
		PerIterationMaxAcceptableLatency: wait, OverallTimeout: wait,
		ServerAddr: addr, NumWorkers: 1, Iterations: 10, MaxFailures: 0,
	}
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// startWorker serves grpc-go's interop TestService (with the interop server's ORCA
// options) through ServeHTTP on a Go SDK worker, registered before it returns.
func startWorker(t *testing.T, addr string) {
	t.Helper()
	server := grpc.NewServer(orca.CallMetricsServerOption(nil))
	recorder := orca.NewServerMetricsRecorder()
	testgrpc.RegisterTestServiceServer(server, interop.NewTestServer(interop.NewTestServerOptions{MetricsRecorder: recorder}))
	connected := make(chan struct{})
	var once sync.Once
	w, err := vyx.NewWorker(vyx.Config{
		Connect: []string{"ws://" + addr}, ID: "go:grpc-interop",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnState: func(s vyx.State) {
			if s.Kind == vyx.Connected {
				once.Do(func() { close(connected) })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every gRPC method is a POST to /<service>/<method>; unknown ones get grpc-go's answer.
	w.Handle("POST /{*rest}", server)
	done := make(chan error, 1)
	go func() { done <- w.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = w.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	select {
	case <-connected:
	case err := <-done:
		t.Fatalf("worker stopped before registering: %v", err)
	case <-time.After(wait):
		t.Fatalf("worker not registered within %s", wait)
	}
}

// startGateway runs the gateway binary on 127.0.0.1:0 until the test ends and returns its
// address. limits.body_buffer is 0: by default the gateway reads up to 256 KiB of a body
// before it opens the stream, and a bidi call's first message never ends a body.
func startGateway(t *testing.T) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "vyx.yaml")
	yaml := "accept_unknown_workers: true\nlimits:\n  body_buffer: 0\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBinary(t), "--config", config, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	// The gateway dies with the test process, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(wait):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if addr, ok := strings.CutPrefix(s.Text(), "listening http://"); ok {
				lines <- addr
			}
		}
		close(lines)
	}()
	select {
	case addr, ok := <-lines:
		if !ok {
			t.Fatalf("the gateway exited without listening:\n%s", stderr.String())
		}
		return addr
	case <-time.After(wait):
		t.Fatalf("no listening line from the gateway within %s:\n%s", wait, stderr.String())
	}
	return ""
}

// gatewayBinary is $VYX_GATEWAY, else $CARGO_TARGET_DIR/release/vyx (the repository's
// target/ when unset); the test fails without one.
func gatewayBinary(t *testing.T) string {
	if p := os.Getenv("VYX_GATEWAY"); p != "" {
		return p
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = "target"
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(repo, target)
	}
	p := filepath.Join(target, "release", "vyx")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no gateway binary at %s: cargo build --release -p vyx-gateway (or set VYX_GATEWAY)", p)
	}
	return p
}

// failOn sends grpc-go's logs to t: the interop cases report a failure through
// logger.Fatal, which would end the test binary (and skip every cleanup) with os.Exit.
func failOn(t *testing.T) {
	logs.mu.Lock()
	logs.t = t
	logs.mu.Unlock()
}

var logs = &testLogger{}

func init() { grpclog.SetLoggerV2(logs) }

// testLogger is a grpclog.LoggerV2 that fails the current case on Fatal (from its own
// goroutine: the interop cases call it there) and logs errors to it.
type testLogger struct {
	mu sync.Mutex
	t  *testing.T
}

func (l *testLogger) current() *testing.T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t
}

func (l *testLogger) Info(...any)             {}
func (l *testLogger) Infoln(...any)           {}
func (l *testLogger) Infof(string, ...any)    {}
func (l *testLogger) Warning(...any)          {}
func (l *testLogger) Warningln(...any)        {}
func (l *testLogger) Warningf(string, ...any) {}
func (l *testLogger) Error(args ...any)       { l.log(fmt.Sprint(args...)) }
func (l *testLogger) Errorln(args ...any)     { l.log(fmt.Sprintln(args...)) }
func (l *testLogger) Errorf(f string, args ...any) {
	l.log(fmt.Sprintf(f, args...))
}
func (l *testLogger) Fatal(args ...any)   { l.fatal(fmt.Sprint(args...)) }
func (l *testLogger) Fatalln(args ...any) { l.fatal(fmt.Sprintln(args...)) }
func (l *testLogger) Fatalf(f string, args ...any) {
	l.fatal(fmt.Sprintf(f, args...))
}
func (l *testLogger) V(int) bool { return false }

func (l *testLogger) log(s string) {
	if t := l.current(); t != nil {
		t.Log("grpc: " + s)
	}
}

func (l *testLogger) fatal(s string) {
	t := l.current()
	if t == nil {
		panic("grpc: " + s)
	}
	t.Fatal("grpc: " + s)
}

// syncBuffer is the gateway's stderr, written by exec's copier and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
