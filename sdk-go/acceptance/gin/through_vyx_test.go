//go:build vyxacceptance

// The seam of gin's test suite, replaced: sdk-go/acceptance/gin-suite copies this file into
// a temporary copy of gin (package gin) and points the tests' PerformRequest and
// router.ServeHTTP(w, req) calls at serveThrough. Each request goes over HTTP to a real
// server that runs the test's engine, and the answer is copied into the test's recorder.
// VYX_GIN_THROUGH picks the server: "vyx" (a gateway, $VYX_GATEWAY, with the engine mounted
// on a Go SDK worker) or "net/http" (http.Server serving the engine directly: what a real
// server changes, so that the vyx column's own differences stand out).
package gin

import (
	"bufio"
	"context"
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

	vyx "github.com/vyx-dev/vyx/sdk-go"
)

// through is the server every request goes through, started once for the test binary.
var through struct {
	sync.Mutex
	base    string       // http://127.0.0.1:port
	handler http.Handler // the current test's engine
	client  *http.Client
	stop    func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if through.stop != nil {
		through.stop()
	}
	os.Exit(code)
}

// serveThrough is h.ServeHTTP(w, req) over HTTP through the chosen server. Requests are
// served one at a time: one worker route serves whichever engine the current test built.
func serveThrough(h http.Handler, w http.ResponseWriter, req *http.Request) {
	through.Lock()
	defer through.Unlock()
	if through.base == "" {
		start()
	}
	through.handler = h
	target := req.RequestURI
	if target == "" {
		target = req.URL.RequestURI()
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, through.base+"/", req.Body)
	if err != nil {
		panic(err)
	}
	// The target exactly as the test wrote it (Opaque is sent as the request line's path;
	// one that starts with "//" is sent in absolute form, or it would name a host).
	out.URL.Opaque, out.URL.RawQuery, _ = strings.Cut(target, "?")
	out.URL.Path, out.URL.RawPath = "", ""
	if strings.HasPrefix(out.URL.Opaque, "//") {
		out.URL.Opaque = "//" + out.URL.Host + out.URL.Opaque
	}
	out.Header = req.Header.Clone()
	out.Host = req.Host
	out.ContentLength = req.ContentLength
	if req.Body == nil || req.Body == http.NoBody {
		out.Body, out.ContentLength = nil, 0
	}
	resp, err := through.client.Do(out)
	if err != nil {
		w.WriteHeader(599) // no answer: the test's assertions fail on it
		fmt.Fprintf(w, "through %s: %v", os.Getenv("VYX_GIN_THROUGH"), err)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// current serves the engine of the request's test.
var current = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	through.handler.ServeHTTP(w, r)
})

func start() {
	through.client = &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	switch os.Getenv("VYX_GIN_THROUGH") {
	case "net/http":
		srv := httptest.NewServer(current)
		through.base, through.stop = srv.URL, srv.Close
	case "vyx":
		startVyx()
	default:
		panic("VYX_GIN_THROUGH is vyx or net/http")
	}
}

// startVyx runs the gateway on 127.0.0.1:0 and a worker serving every path with current.
func startVyx() {
	dir, err := os.MkdirTemp("", "vyx-gin-")
	if err != nil {
		panic(err)
	}
	config := filepath.Join(dir, "vyx.yaml")
	if err := os.WriteFile(config, []byte("accept_unknown_workers: true\n"), 0o600); err != nil {
		panic(err)
	}
	cmd := exec.Command(os.Getenv("VYX_GATEWAY"), "--config", config, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the tests
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	addr := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if a, ok := strings.CutPrefix(s.Text(), "listening http://"); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		through.base = "http://" + a
	case <-time.After(30 * time.Second):
		panic("the gateway did not listen")
	}
	connected := make(chan struct{})
	var once sync.Once
	worker, err := vyx.NewWorker(vyx.Config{
		Connect: []string{"ws://" + strings.TrimPrefix(through.base, "http://")}, ID: "gin:suite",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnState: func(s vyx.State) {
			if s.Kind == vyx.Connected {
				once.Do(func() { close(connected) })
			}
		},
	})
	if err != nil {
		panic(err)
	}
	worker.Handle("/", current)
	done := make(chan error, 1)
	go func() { done <- worker.Start(context.Background()) }()
	select {
	case <-connected:
	case err := <-done:
		panic(fmt.Sprintf("worker: %v", err))
	case <-time.After(30 * time.Second):
		panic("the worker did not register")
	}
	through.stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = worker.Shutdown(ctx)
		<-done
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
}
