package grpcinterop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/testdata"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// wait bounds every wait on the gateway and the worker; a bound, not a timing assertion.
const wait = 30 * time.Second

// interopCases are grpc-go's interop client test cases (interop/client/client.go) this
// setup runs, by their names there; the package doc lists the others and why.
var interopCases = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, cc *grpc.ClientConn, dial dialer)
}{
	{"empty_unary", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"large_unary", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"client_streaming", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"server_streaming", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"ping_pong", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"empty_stream", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"timeout_on_sleeping_server", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_begin", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_first_response", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"status_code_and_message", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"special_status_message", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"custom_metadata", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"unimplemented_method", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoUnimplementedMethod(ctx, cc)
	}},
	{"unimplemented_service", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	}},
	{"orca_per_rpc", func(ctx context.Context, t *testing.T, _ *grpc.ClientConn, dial dialer) {
		// The interop client's service config for this case: its ORCA-reading LB policy.
		cc := dial(t, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"test_backend_metrics_load_balancer": {}}]}`))
		interop.DoORCAPerRPCTest(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"rpc_soak", func(ctx context.Context, _ *testing.T, cc *grpc.ClientConn, _ dialer) {
		c := soak()
		c.ChannelForTest = func() (*grpc.ClientConn, func()) { return cc, func() {} }
		interop.DoSoakTest(ctx, c)
	}},
	{"channel_soak", func(ctx context.Context, t *testing.T, _ *grpc.ClientConn, dial dialer) {
		c := soak()
		c.ChannelForTest = func() (*grpc.ClientConn, func()) {
			cc := dial(t)
			return cc, func() { cc.Close() }
		}
		interop.DoSoakTest(ctx, c)
	}},
}

// TestInterop runs each case over h2c against one gateway and one worker, on one client
// connection (orca_per_rpc and channel_soak make their own).
func TestInterop(t *testing.T) {
	runInterop(t, plaintext())
}

// TestInteropOverTLS runs each case as TestInterop does, with the gateway serving TLS
// (ALPN h2): grpc-go's interop client with its test CA, and the worker over wss://.
func TestInteropOverTLS(t *testing.T) {
	runInterop(t, overTLS(t))
}

func runInterop(t *testing.T, tr transport) {
	addr := startGateway(t, tr)
	startWorker(t, addr, tr)
	dial := func(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
		t.Helper()
		cc, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(tr.creds))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	cc := dial(t)
	for _, c := range interopCases {
		t.Run(c.name, func(t *testing.T) {
			failOn(t)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c.run(ctx, t, cc, dial)
		})
	}
}

// dialer is a new client connection to the gateway, closed when the test ends.
type dialer func(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn

// transport is how the client and the worker reach the gateway: h2c and ws://, or TLS.
type transport struct {
	creds credentials.TransportCredentials
	// tls is the gateway's `tls:` section, with the CA that signs its certificate; nil
	// for plaintext.
	tls *gatewayTLS
}

type gatewayTLS struct{ cert, key, ca string }

// testHost is the gateway's name over TLS: grpc-go's test server certificate is for
// *.test.example.com, and the client and the worker dial 127.0.0.1 under this name.
const testHost = "gw.test.example.com"

func plaintext() transport { return transport{creds: insecure.NewCredentials()} }

// overTLS is grpc-go's interop TLS setup (its test server certificate and test CA, the
// name overridden), through the gateway.
func overTLS(t *testing.T) transport {
	ca := testdata.Path("x509/server_ca_cert.pem")
	creds, err := credentials.NewClientTLSFromFile(ca, testHost)
	if err != nil {
		t.Fatal(err)
	}
	return transport{creds: creds, tls: &gatewayTLS{
		cert: testdata.Path("x509/server1_cert.pem"),
		key:  testdata.Path("x509/server1_key.pem"),
		ca:   ca,
	}}
}

// soak is the interop client's soak configuration, made small: 10 large-unary RPCs, none
// allowed to fail. The latency bound is the wait, so no timing is asserted.
func soak() interop.SoakTestConfig {
	return interop.SoakTestConfig{
		RequestSize: 271828, ResponseSize: 314159,
		PerIterationMaxAcceptableLatency: wait, OverallTimeout: wait,
		ServerAddr: "vyx", NumWorkers: 1, Iterations: 10, MaxFailures: 0,
	}
}

// startWorker serves grpc-go's interop TestService (with the interop server's ORCA
// options) through ServeHTTP on a Go SDK worker, registered before it returns.
func startWorker(t *testing.T, addr string, tr transport) {
	t.Helper()
	server := grpc.NewServer(orca.CallMetricsServerOption(nil))
	recorder := orca.NewServerMetricsRecorder()
	testgrpc.RegisterTestServiceServer(server, interop.NewTestServer(interop.NewTestServerOptions{MetricsRecorder: recorder}))
	// Every gRPC method is a POST to /<service>/<method>; unknown ones get grpc-go's answer.
	serve(t, addr, tr, "POST /{*rest}", server)
}

// serve mounts handler on pattern on a Go SDK worker connected to the gateway at addr,
// registered before it returns and shut down when the test ends.
func serve(t *testing.T, addr string, tr transport, pattern string, handler http.Handler) {
	t.Helper()
	connected := make(chan struct{})
	var once sync.Once
	config := vyx.Config{
		Connect: []string{"ws://" + addr}, ID: "go:grpc-interop",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnState: func(s vyx.State) {
			if s.Kind == vyx.Connected {
				once.Do(func() { close(connected) })
			}
		},
	}
	if tr.tls != nil {
		_, port, _ := net.SplitHostPort(addr)
		config.Connect = []string{"wss://" + net.JoinHostPort(testHost, port)}
		config.CAFile = tr.tls.ca
		gateway, err := netip.ParseAddrPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		config.Resolver = func(context.Context, string, int) ([]netip.AddrPort, error) {
			return []netip.AddrPort{gateway}, nil
		}
	}
	w, err := vyx.NewWorker(config)
	if err != nil {
		t.Fatal(err)
	}
	w.Handle(pattern, handler)
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

// startGateway runs the gateway binary on 127.0.0.1:0, with its default limits, until the
// test ends and returns its address.
func startGateway(t *testing.T, tr transport) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "vyx.yaml")
	yaml := "accept_unknown_workers: true\n"
	listening := "listening http://"
	if tr.tls != nil {
		yaml += fmt.Sprintf("tls:\n  cert: %q\n  key: %q\n", tr.tls.cert, tr.tls.key)
		listening = "listening https://"
	}
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
			if addr, ok := strings.CutPrefix(s.Text(), listening); ok {
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
