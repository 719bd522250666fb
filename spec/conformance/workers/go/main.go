// The Go conformance worker: the routes of spec/conformance/README.md written with the Go
// SDK (sdk-go) on net/http handlers, so that the conformance runner drives it like every
// other language's. The Rust one (../rust/src/main.rs) is the reference.
//
//	VYX_CONNECT=ws://127.0.0.1:9000 VYX_WORKER_ID=conformance:go \
//	    VYX_CONFORMANCE_MAX_CONCURRENCY=1024 vyx-conformance-worker-go
//
// Connection-state changes go to stdout as `state ...` lines; logs go to stderr.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	vyx "github.com/vyx-dev/vyx/sdk-go"
)

const lang = "go"

var (
	replica  = os.Getenv("VYX_CONFORMANCE_REPLICA")
	inFlight atomic.Int64 // /slow, /stream and /barrier handlers not finished
	aborted  atomic.Int64 // /stream bodies cut by a reset
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	b, err := json.Marshal(v)
	if err != nil {
		text(w, 500, err.Error())
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// number is a path value or query value made of digits only.
func number(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// hashBody reads the body as a stream through SHA-256; nothing is kept.
func hashBody(r *http.Request) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// barrier: requests waiting in the current round, released together.
var barrier struct {
	sync.Mutex
	waiting int
	release chan struct{}
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := vyx.Config{Logger: log, OnState: func(s vyx.State) {
		switch s.Kind {
		case vyx.Connected:
			fmt.Printf("state connected %s\n", s.ConnectionID)
		case vyx.Reconnecting:
			fmt.Printf("state reconnecting %d %v\n", s.Attempt, s.Err)
		default:
			fmt.Printf("state %s\n", s.Kind)
		}
	}}
	if v, ok := os.LookupEnv("VYX_CONFORMANCE_MAX_CONCURRENCY"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: VYX_CONFORMANCE_MAX_CONCURRENCY=%s is not a number\n", v)
			os.Exit(2)
		}
		cfg.MaxConcurrency = n
	}
	w, err := vyx.NewWorker(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	routes(w)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func routes(w *vyx.Worker) {
	w.Get("/greet/{name}", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, 200, map[string]string{"hello": r.PathValue("name"), "lang": lang})
	})
	w.Get("/files/{*rest}", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, 200, map[string]string{"rest": r.PathValue("rest")})
	})
	w.HandleFunc("/inspect/{*rest}", func(rw http.ResponseWriter, r *http.Request) {
		path, query, hasQuery := cut(r.RequestURI)
		var q any
		if hasQuery {
			q = query
		}
		pairs := [][2]string{}
		for _, p := range vyx.ParseQuery(query) {
			pairs = append(pairs, [2]string{p.Name, p.Value})
		}
		n, sum, err := hashBody(r)
		if err != nil {
			text(rw, 500, err.Error())
			return
		}
		writeJSON(rw, 200, map[string]any{
			"method": r.Method, "path": path, "query": q, "query_pairs": pairs,
			"params": map[string]string{"rest": r.PathValue("rest")}, "headers": headerPairs(r),
			"body_length": n, "body_sha256": sum, "replica": replica, "lang": lang,
		})
	})
	w.Post("/trailers", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		rw.Header().Set("Trailer", "X-Echo, X-Length")
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		echo := r.Trailer.Get("X-Echo")
		if echo == "" {
			echo = "none"
		}
		_, _ = rw.Write(b)
		rw.Header().Set("X-Echo", echo)
		rw.Header().Set("X-Length", strconv.Itoa(len(b)))
	})
	w.Post("/echo", func(rw http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			rw.Header().Set("Content-Type", ct)
		} else {
			rw.Header()["Content-Type"] = nil // no sniffing: the body goes back as it came
		}
		rw.WriteHeader(200)
		rc := http.NewResponseController(rw)
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := rw.Write(buf[:n]); werr != nil {
					return
				}
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	w.Post("/upload", func(rw http.ResponseWriter, r *http.Request) {
		n, sum, err := hashBody(r)
		if err != nil {
			text(rw, 500, err.Error())
			return
		}
		writeJSON(rw, 200, map[string]any{"length": n, "sha256": sum})
	})
	w.Get("/status/{code}", func(rw http.ResponseWriter, r *http.Request) {
		code, ok := number(r.PathValue("code"))
		if !ok || code < 200 || code > 599 {
			text(rw, 400, "status must be 200..=599")
			return
		}
		h := rw.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("X-Conformance", "status")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		rw.WriteHeader(code)
		if code != 204 && code != 304 {
			fmt.Fprintf(rw, "status %d", code)
		}
	})
	w.Get("/stream/{bytes}", stream)
	w.Get("/slow/{ms}", func(rw http.ResponseWriter, r *http.Request) {
		ms, ok := number(r.PathValue("ms"))
		if !ok {
			text(rw, 400, "ms must be a number")
			return
		}
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		writeJSON(rw, 200, map[string]any{"slept_ms": ms, "in_flight": now, "replica": replica})
	})
	w.Get("/barrier/{n}", func(rw http.ResponseWriter, r *http.Request) {
		n, ok := number(r.PathValue("n"))
		if !ok {
			text(rw, 400, "n must be a number")
			return
		}
		inFlight.Add(1)
		defer inFlight.Add(-1)
		barrier.Lock()
		if barrier.release == nil {
			barrier.release = make(chan struct{})
		}
		release := barrier.release
		barrier.waiting++
		if barrier.waiting >= n {
			// Everyone waiting in this round goes; the next request starts a new round.
			close(release)
			barrier.waiting, barrier.release = 0, nil
			barrier.Unlock()
			writeJSON(rw, 200, map[string]int{"n": n})
			return
		}
		barrier.Unlock()
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-release:
			writeJSON(rw, 200, map[string]int{"n": n})
		case <-t.C:
			barrier.Lock()
			arrived := barrier.waiting
			if barrier.release == release {
				barrier.waiting--
			}
			barrier.Unlock()
			text(rw, 500, fmt.Sprintf("barrier: %d of %d requests arrived within 10 s", arrived, n))
		case <-r.Context().Done():
			barrier.Lock()
			if barrier.release == release {
				barrier.waiting--
			}
			barrier.Unlock()
		}
	})
	w.Get("/throw", func(http.ResponseWriter, *http.Request) {
		panic("conformance: /throw fails on purpose")
	})
	w.Get("/empty", func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(204) })
	w.Get("/hints", func(rw http.ResponseWriter, r *http.Request) {
		// net/http's way: the header map's fields go out with the 103, and stay for the 200.
		rw.Header().Set("Link", "</hinted.css>; rel=preload; as=style")
		rw.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(rw, "hinted")
	})
	w.Get("/ws", func(rw http.ResponseWriter, r *http.Request) {
		// coder/websocket's Accept hijacks the stream (an upgrade, PROTOCOL.md §4.5).
		ws, err := websocket.Accept(rw, r, nil)
		if err != nil {
			return // Accept answered the refusal
		}
		defer ws.CloseNow()
		ws.SetReadLimit(-1)
		for {
			typ, msg, err := ws.Read(r.Context())
			if err != nil {
				if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
					_ = ws.Close(websocket.StatusNormalClosure, "")
				}
				return
			}
			if err := ws.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	w.Head("/head", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Conformance", "head")
	})
	w.Get("/stats", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, 200, map[string]any{"in_flight": inFlight.Load(), "aborted": aborted.Load(), "replica": replica})
	})
}

// headerPairs lists the request's headers with lower-case names, host first, each name's
// values in the order received (net/http keeps the order per name, not across names).
func headerPairs(r *http.Request) [][2]string {
	pairs := [][2]string{}
	if r.Host != "" {
		pairs = append(pairs, [2]string{"host", r.Host})
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range r.Header[name] {
			pairs = append(pairs, [2]string{strings.ToLower(name), v})
		}
	}
	return pairs
}

func cut(target string) (path, query string, hasQuery bool) {
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			return target[:i], target[i+1:], true
		}
	}
	return target, "", false
}

// pattern: byte i of a /stream body is i mod 251; every chunk is a slice of it.
var pattern = func() []byte {
	b := make([]byte, 1<<20+251)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func stream(rw http.ResponseWriter, r *http.Request) {
	total, ok := number(r.PathValue("bytes"))
	if !ok {
		text(rw, 400, "bytes must be a number")
		return
	}
	query := func(name string, dflt int) int {
		for _, p := range vyx.ParseQuery(r.URL.RawQuery) {
			if p.Name == name {
				if n, ok := number(p.Value); ok {
					return n
				}
			}
		}
		return dflt
	}
	chunk := min(max(query("chunk", 65536), 1), 1<<20)
	pause := time.Duration(query("pause_ms", 0)) * time.Millisecond
	inFlight.Add(1)
	defer inFlight.Add(-1)
	rw.Header().Set("Content-Type", "application/octet-stream")
	rw.WriteHeader(200)
	rc := http.NewResponseController(rw)
	_ = rc.Flush()
	sent := 0
	for sent < total {
		if sent > 0 && pause > 0 {
			select {
			case <-time.After(pause):
			case <-r.Context().Done():
			}
		}
		if r.Context().Err() != nil {
			break
		}
		n := min(chunk, total-sent)
		start := sent % 251
		if _, err := rw.Write(pattern[start : start+n]); err != nil {
			break
		}
		sent += n
		if sent < total {
			_ = rc.Flush()
		}
	}
	if sent < total {
		aborted.Add(1)
	}
}
