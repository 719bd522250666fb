package vyx

// The session against the behavioural vectors: every trace of spec/vectors/streams.json
// replayed by a scripted gateway to a Worker serving the conformance routes it names, and
// every case of retry.json acted out on a real socket.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

// traceRoutes are the conformance routes the traces use (spec/conformance/README.md).
func traceRoutes(w *Worker) {
	w.Get("/status/{code}", func(rw http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteHeader(code)
		fmt.Fprintf(rw, "status %d", code)
	})
	w.Post("/echo", func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(200)
		_, _ = io.Copy(rw, r.Body)
	})
	w.Post("/upload", func(rw http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(rw, `{"length":%d,"sha256":"%s"}`, n, hex.EncodeToString(h.Sum(nil)))
	})
	w.Get("/slow/{ms}", func(rw http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.PathValue("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintf(rw, `{"slept_ms":%d}`, ms)
		case <-r.Context().Done():
		}
	})
	w.Get("/stream/{bytes}", func(rw http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("bytes"))
		rw.WriteHeader(200)
		http.NewResponseController(rw).Flush()
		_, _ = rw.Write(patternBytes(0, n))
	})
}

func patternBytes(offset, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((offset + i) % 251)
	}
	return b
}

type traceFrame struct {
	Type      string     `json:"type"`
	StreamID  uint32     `json:"stream_id"`
	Route     string     `json:"route"`
	Target    string     `json:"target"`
	Params    [][]string `json:"params"`
	EndStream *bool      `json:"end_stream"`
	Data      *string    `json:"data"`
	Pattern   []int      `json:"pattern"`
	JSON      any        `json:"json"`
	Increment uint32     `json:"increment"`
	Code      any        `json:"code"`
	Deadline  uint64     `json:"deadline_ms"`
	Status    uint16     `json:"status"`
	Hex       string     `json:"hex"`
	Text      *string    `json:"text"`
	Zeros     int        `json:"zeros"`
	Close     int        `json:"close"`
}

func (f *traceFrame) body() ([]byte, bool) {
	switch {
	case f.Data != nil:
		return []byte(*f.Data), true
	case f.Pattern != nil:
		return patternBytes(f.Pattern[0], f.Pattern[1]), true
	}
	return nil, false
}

func TestStreamTraces(t *testing.T) {
	var file struct {
		Traces []struct {
			Name    string            `json:"name"`
			Welcome map[string]uint64 `json:"welcome"`
			Steps   []struct {
				Send   *traceFrame `json:"send"`
				Expect *traceFrame `json:"expect"`
				Quiet  int         `json:"quiet_ms"`
			} `json:"steps"`
		} `json:"traces"`
	}
	vectors.Load(t, "streams.json", &file)
	if len(file.Traces) == 0 {
		t.Fatal("no traces")
	}
	for _, tr := range file.Traces {
		t.Run(tr.Name, func(t *testing.T) {
			t.Parallel()
			g := gwtest.New(t)
			startWorker(t, g, traceRoutes, Config{})
			c := g.Accept()
			c.Welcome(tr.Welcome["initial_window"])
			ended := map[uint32]bool{} // streams whose response ended
			for i, st := range tr.Steps {
				switch {
				case st.Send != nil:
					replay(t, c, st.Send)
				case st.Expect != nil && st.Expect.Close != 0:
					if got := c.CloseCode(); got != st.Expect.Close {
						t.Fatalf("step %d: worker closed %d, want %d", i, got, st.Expect.Close)
					}
				case st.Expect != nil:
					expect(t, c, i, st.Expect, ended)
				default:
					select {
					case m := <-c.Msgs:
						if f, err := frame.Decode(m.B, protocol.MaxFrameSize); err != nil || f.Type() != frame.TypeWindow {
							t.Fatalf("step %d: a frame during %d ms of quiet", i, st.Quiet)
						}
					case <-time.After(time.Duration(st.Quiet) * time.Millisecond):
					}
				}
			}
		})
	}
}

func replay(t *testing.T, c *gwtest.Conn, f *traceFrame) {
	t.Helper()
	switch {
	case f.Hex != "":
		b, _ := hex.DecodeString(f.Hex)
		c.SendRaw(websocket.MessageBinary, b)
		return
	case f.Text != nil:
		c.SendRaw(websocket.MessageText, []byte(*f.Text))
		return
	case f.Zeros > 0:
		c.SendRaw(websocket.MessageBinary, make([]byte, f.Zeros))
		return
	}
	end := f.EndStream != nil && *f.EndStream
	switch f.Type {
	case "REQUEST":
		var params []string
		for _, p := range f.Params {
			params = append(params, p...)
		}
		c.Send(c.Request(f.StreamID, f.Route, f.Target, end, params...))
	case "DATA":
		b, _ := f.body()
		c.Send(&frame.Data{StreamID: f.StreamID, EndStream: end, Data: b})
	case "WINDOW":
		c.Send(&frame.Window{StreamID: f.StreamID, Increment: f.Increment})
	case "RESET":
		code, _ := frame.ResetCodeByName(f.Code.(string))
		c.Send(&frame.Reset{StreamID: f.StreamID, Code: code})
	case "DRAIN":
		c.Send(&frame.Drain{Reason: "test", DeadlineMS: f.Deadline})
	default:
		t.Fatalf("cannot send %q", f.Type)
	}
}

func expect(t *testing.T, c *gwtest.Conn, step int, want *traceFrame, ended map[uint32]bool) {
	t.Helper()
	wantEnd := want.EndStream
	switch want.Type {
	case "RESPONSE":
		f, err := c.Next()
		r, ok := f.(*frame.Response)
		if err != nil || !ok || r.StreamID != want.StreamID || r.Status != want.Status {
			t.Fatalf("step %d: want RESPONSE %d on %d, got %#v (%v)", step, want.Status, want.StreamID, f, err)
		}
		if wantEnd != nil && r.EndStream != *wantEnd {
			t.Fatalf("step %d: RESPONSE end_stream %v", step, r.EndStream)
		}
		ended[r.StreamID] = r.EndStream
	case "RESET":
		f, err := c.Next()
		r, ok := f.(*frame.Reset)
		if err != nil || !ok || r.StreamID != want.StreamID || r.Code.Name() != want.Code {
			t.Fatalf("step %d: want RESET %v on %d, got %#v (%v)", step, want.Code, want.StreamID, f, err)
		}
	case "DATA":
		wantBody, haveBody := want.body()
		if want.JSON != nil {
			haveBody = false
		}
		end := wantEnd == nil || *wantEnd
		var got []byte
		gotEnd := ended[want.StreamID]
		for !gotEnd && (!end && !(haveBody && len(got) >= len(wantBody)) || end) {
			f, err := c.Next()
			d, ok := f.(*frame.Data)
			if err != nil || !ok || d.StreamID != want.StreamID {
				t.Fatalf("step %d: want DATA on %d, got %#v (%v)", step, want.StreamID, f, err)
			}
			got = append(got, d.Data...)
			gotEnd = d.EndStream
			if !end && haveBody && len(got) >= len(wantBody) {
				break
			}
		}
		ended[want.StreamID] = gotEnd
		if gotEnd != end {
			t.Fatalf("step %d: DATA end_stream %v, want %v", step, gotEnd, end)
		}
		if haveBody && !bytes.Equal(got, wantBody) {
			t.Fatalf("step %d: body of %d bytes differs from the expected %d", step, len(got), len(wantBody))
		}
		if want.JSON != nil && !reflect.DeepEqual(jsonOf(got), want.JSON) {
			t.Fatalf("step %d: body %s, want JSON %v", step, got, want.JSON)
		}
	default:
		t.Fatalf("cannot expect %q", want.Type)
	}
}

func TestRetryVectors(t *testing.T) {
	var file struct {
		Cases []struct {
			Name    string `json:"name"`
			Outcome struct {
				HTTPStatus int    `json:"http_status"`
				Upgrade    string `json:"upgrade"`
				Close      int    `json:"close"`
				Phase      string `json:"phase"`
				Reason     string `json:"close_reason"`
				Welcome    string `json:"welcome"`
			} `json:"outcome"`
			HelloMaxConcurrency uint64   `json:"hello_max_concurrency"`
			WorkerCloses        int      `json:"worker_closes"`
			Retry               bool     `json:"retry"`
			ErrorNames          []string `json:"error_names"`
		} `json:"cases"`
	}
	vectors.Load(t, "retry.json", &file)
	const reason = "the gateway's reason"
	for _, tc := range file.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			o := tc.Outcome
			g := gwtest.New(t)
			g.Answer = func(attempt int, w http.ResponseWriter, r *http.Request) (bool, bool) {
				if attempt > 1 {
					return true, true
				}
				switch {
				case o.HTTPStatus != 0:
					w.Header().Set("Content-Type", "text/plain; charset=utf-8")
					w.WriteHeader(o.HTTPStatus)
					_, _ = io.WriteString(w, reason)
					return false, false
				case o.Upgrade == "no_subprotocol":
					return true, false
				case o.Upgrade == "dropped":
					conn, _, _ := http.NewResponseController(w).Hijack()
					_ = conn.Close()
					return false, false
				}
				return true, true
			}
			cfg := Config{}
			if tc.HelloMaxConcurrency != 0 {
				cfg.MaxConcurrency = int(tc.HelloMaxConcurrency)
			}
			_, _, done := startWorker(t, g, func(*Worker) {}, cfg)
			if o.HTTPStatus == 0 && o.Upgrade == "" {
				c := g.Accept()
				switch {
				case o.Welcome != "":
					c.SendRaw(websocket.MessageBinary, append([]byte{frame.TypeWelcome, 0, 0, 0, 0, 0}, o.Welcome...))
					if got := c.CloseCode(); got != tc.WorkerCloses {
						t.Fatalf("the worker closed %d, want %d", got, tc.WorkerCloses)
					}
				default:
					if o.Phase == "connected" {
						c.Welcome(0)
					}
					if o.Close >= 4000 {
						c.Send(&frame.ErrorMessage{Code: frame.CloseCode(o.Close), Message: reason})
					}
					closeReason := reason
					if o.Reason != "" {
						closeReason = o.Reason // the worker must name the ERROR's message
					}
					_ = c.WS.Close(websocket.StatusCode(o.Close), closeReason)
				}
			}
			if tc.Retry {
				c := g.Accept() // the second attempt
				if c.Hello == nil {
					t.Fatal("no HELLO on the second attempt")
				}
				return
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Start returned nil for a permanent refusal")
				}
				for _, name := range tc.ErrorNames {
					name = strings.ReplaceAll(name, "{reason}", reason)
					if !strings.Contains(err.Error(), name) {
						t.Fatalf("error %q does not name %q", err, name)
					}
				}
				var ce *ConnectError
				if !errors.As(err, &ce) || !ce.Permanent() {
					t.Fatalf("error %v is not a permanent *ConnectError", err)
				}
			case <-time.After(gwtest.Wait):
				t.Fatal("the worker did not stop")
			}
			if n := g.Attempts(); n != 1 {
				t.Fatalf("%d attempts, want 1", n)
			}
		})
	}
}

// TestShutdownDrains: Shutdown sends DRAIN, lets the in-flight request finish, answers the
// gateway's 1000 with 1000, and Start returns nil with every state delivered in order.
func TestShutdownDrains(t *testing.T) {
	g := gwtest.New(t)
	w, states, done := startWorker(t, g, traceRoutes, Config{})
	c := g.Accept()
	c.Welcome(0)
	c.Send(c.Request(1, "GET /slow/{ms}", "/slow/200", true, "ms", "200"))
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
		defer cancel()
		shut <- w.Shutdown(ctx)
	}()
	f, err := c.Next()
	d, ok := f.(*frame.Drain)
	if err != nil || !ok || d.DeadlineMS < 5000 {
		t.Fatalf("want DRAIN with a deadline ≥ 5 s, got %#v (%v)", f, err)
	}
	if f, err := c.Next(); err != nil || f.(*frame.Response).Status != 200 {
		t.Fatalf("the in-flight request: %#v (%v)", f, err)
	}
	if f, err := c.Next(); err != nil || !f.(*frame.Data).EndStream {
		t.Fatalf("the in-flight body: %#v (%v)", f, err)
	}
	_ = c.WS.Close(websocket.StatusNormalClosure, "drained")
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	want := []string{"connecting", "connected", "draining", "stopped"}
	if got := states.kinds(); !reflect.DeepEqual(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	g.NoAttempt(300 * time.Millisecond)
}

func TestHelloFromConfig(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, traceRoutes, Config{Token: "s3cret", MaxConcurrency: 7, Labels: map[string]string{"zone": "eu"}})
	c := g.Accept()
	h := c.Hello
	if h.WorkerID != "test:go" || h.MaxConcurrency != 7 || h.SDK != "vyx-go/"+Version || h.Instance == "" || h.Labels["zone"] != "eu" || len(h.Routes) != 5 {
		t.Fatalf("HELLO %+v", h)
	}
	if got := c.Req.Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Fatalf("Authorization %q", got)
	}
	if c.Req.URL.Path != registerPath || c.Req.Header.Get(protocol.WorkerIDHeader) != "test:go" {
		t.Fatalf("upgrade %s %v", c.Req.URL, c.Req.Header)
	}
	if ext := c.Req.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("offers extensions %q", ext)
	}
	if b, _ := json.Marshal(h.Routes); !strings.Contains(string(b), "/status/{code}") {
		t.Fatalf("routes %s", b)
	}
}

func TestIdempotentRouteInHello(t *testing.T) {
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) {
		traceRoutes(w)
		w.Idempotent("POST /echo")
	}, Config{})
	h := g.Accept().Hello
	var marked []string
	for _, r := range h.Routes {
		if r.Idempotent {
			marked = append(marked, r.Method+" "+r.Path)
		}
	}
	if !reflect.DeepEqual(marked, []string{"POST /echo"}) {
		t.Fatalf("idempotent routes %v in %+v", marked, h.Routes)
	}
}

func TestIdempotentNeedsARoute(t *testing.T) {
	w, err := NewWorker(Config{Connect: []string{"ws://127.0.0.1:1"}, ID: "test:go"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Idempotent of an undeclared route did not panic")
		}
	}()
	w.Idempotent("POST /nowhere")
}

func TestRegistrationURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:9000":              "ws://127.0.0.1:9000/_vyx/register",
		"wss://gw.example/":                "wss://gw.example/_vyx/register",
		"ws://gw.example:9000?region=eu":   "ws://gw.example:9000/_vyx/register?region=eu",
		"wss://gw.example/custom/register": "wss://gw.example/custom/register",
	} {
		if got := registrationURL(in); got != want {
			t.Errorf("registrationURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCAFile: a wss:// gateway behind a private CA is trusted through Config.CAFile (or
// VYX_CA_FILE), and refused (a TLS failure, retried) without it.
func TestCAFile(t *testing.T) {
	g := gwtest.NewTLS(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, g.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	startWorker(t, g, traceRoutes, Config{CAFile: ca})
	c := g.Accept()
	if c.Hello.WorkerID != "test:go" {
		t.Fatalf("HELLO over TLS: %+v", c.Hello)
	}

	untrusted := gwtest.NewTLS(t)
	_, states, _ := startWorker(t, untrusted, traceRoutes, Config{})
	s := states.waitFor(t, Reconnecting)
	if s.Err == nil || !strings.Contains(s.Err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", s.Err)
	}
}
