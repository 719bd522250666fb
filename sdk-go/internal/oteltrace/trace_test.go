package oteltrace

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// wait bounds every wait on the gateway, the worker and the receiver; not a timing
// assertion.
const wait = 30 * time.Second

const (
	traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan = "00f067aa0ba902b7"
)

func TestOtelhttpContinuesTheGatewaysTrace(t *testing.T) {
	spans := startReceiver(t)
	addr := startGateway(t, "tracing:\n  endpoint: "+spans.url+"\n  service_name: gateway\n")
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	// The app's usual instrumentation: otelhttp around its handler, W3C propagation.
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Header.Get("traceparent"), r.Header.Get("tracestate"))
	})
	handler := otelhttp.NewHandler(app, "GET /items/{id}",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}))
	startWorker(t, addr, handler)

	req, _ := http.NewRequest("GET", "http://"+addr+"/items/7", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	req.Header.Set("tracestate", "vendor=x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}

	gw := spans.next(t)
	if got := hex.EncodeToString(gw.TraceId); got != traceID {
		t.Errorf("gateway span's trace %s, want the client's %s", got, traceID)
	}
	if got := hex.EncodeToString(gw.ParentSpanId); got != clientSpan {
		t.Errorf("gateway span's parent %s, want the client's span %s", got, clientSpan)
	}
	if gw.Kind != tracepb.Span_SPAN_KIND_SERVER || gw.Name != "GET /items/{id}" {
		t.Errorf("gateway span %q kind %v", gw.Name, gw.Kind)
	}
	gwSpan := hex.EncodeToString(gw.SpanId)
	if want := "00-" + traceID + "-" + gwSpan + "-01 vendor=x"; string(body) != want {
		t.Errorf("the handler saw %q, want %q", body, want)
	}

	ended := recorder.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d worker spans, want 1", len(ended))
	}
	ws := ended[0]
	if ws.SpanKind() != trace.SpanKindServer {
		t.Errorf("worker span kind %v", ws.SpanKind())
	}
	if got := ws.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("worker span's trace %s, want %s", got, traceID)
	}
	if got := ws.Parent().SpanID().String(); got != gwSpan || !ws.Parent().IsRemote() {
		t.Errorf("worker span's parent %s (remote %v), want the gateway's span %s", got, ws.Parent().IsRemote(), gwSpan)
	}
}

// receiver is an OTLP/HTTP (protobuf) collector: every span sent to url comes out of next.
type receiver struct {
	url   string
	spans chan *tracepb.Span
}

func startReceiver(t *testing.T) *receiver {
	r := &receiver{spans: make(chan *tracepb.Span, 64)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var export coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &export)
		}
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
			t.Errorf("receiver: %s %s %s: %v", req.Method, req.URL.Path, req.Header.Get("Content-Type"), err)
			w.WriteHeader(400)
			return
		}
		for _, rs := range export.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans <- s
				}
			}
		}
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *receiver) next(t *testing.T) *tracepb.Span {
	t.Helper()
	select {
	case s := <-r.spans:
		return s
	case <-time.After(wait):
		t.Fatalf("no span from the gateway within %s", wait)
		return nil
	}
}

// startWorker serves h on GET /items/{id} from a Go SDK worker, registered before it
// returns.
func startWorker(t *testing.T, addr string, h http.Handler) {
	t.Helper()
	connected := make(chan struct{})
	var once sync.Once
	w, err := vyx.NewWorker(vyx.Config{
		Connect: []string{"ws://" + addr}, ID: "go:traced",
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
	w.Handle("GET /items/{id}", h)
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

// startGateway runs the gateway binary on 127.0.0.1:0 with yaml (and any worker accepted)
// until the test ends, and returns its address.
func startGateway(t *testing.T, yaml string) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "vyx.yaml")
	yaml = "accept_unknown_workers: true\naccess_log: {mode: off}\n" + yaml
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBinary(t), "--config", config, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	var stderr strings.Builder
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return stderr.Write(p)
	})
	logs := func() string { mu.Lock(); defer mu.Unlock(); return stderr.String() }
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
			t.Logf("gateway stderr:\n%s", logs())
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
			t.Fatalf("the gateway exited without listening:\n%s", logs())
		}
		return addr
	case <-time.After(wait):
		t.Fatalf("no listening line from the gateway within %s:\n%s", wait, logs())
	}
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
