//go:build go1.24

package vyx

// Host fidelity: the request a handler gets and the response its client gets through vyx
// are what http.Server gives serving the same handler directly, over HTTP/1.1 and HTTP/2
// (h2c), each compared with the server itself rather than with a copy of its rules.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// nativeClient serves h with http.Server (h2c only when h2) and returns a client for it
// that leaves bodies and redirects as they come.
func nativeClient(t *testing.T, h http.Handler, h2 bool) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	tr := &http.Transport{DisableCompression: true}
	if h2 {
		srv.Config.Protocols, tr.Protocols = new(http.Protocols), new(http.Protocols)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// headView is what the comparison looks at: status, content-type, content-length, whether
// the body is streamed without a length (chunked on HTTP/1.1), the other header names, and
// the body.
func headView(status int, h http.Header, streamed bool, body []byte) string {
	var names []string
	for k := range h {
		switch k {
		case "Content-Type", "Content-Length", "Date":
		default:
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return fmt.Sprintf("%d type=%q length=%q streamed=%v names=%v body=%d bytes %q",
		status, h["Content-Type"], h["Content-Length"], streamed, names, len(body), body[:min(len(body), 16)])
}

// vyxView is headView of a RESPONSE and its body: streamed is a head without content-length
// that a body follows (the gateway chunks it to an HTTP/1.1 client).
func vyxView(r *frame.Response, body []byte) string {
	h := http.Header{}
	for _, f := range r.Headers {
		h.Add(f.Name, string(f.Value))
	}
	return headView(int(r.Status), h, h.Get("Content-Length") == "" && !r.EndStream, body)
}

// responses are handlers whose answers http.Server shapes: the size past which it stops
// buffering, what a 304/204/1xx keeps, header names that are not tokens, sniffing.
// http1Only marks what follows its HTTP/1.1 server only: its HTTP/2 server sends a 204's
// Content-Length, which RFC 9110 §8.6 forbids, and a 304's Content-Type; vyx answers every
// client as the HTTP/1.1 server does.
var responses = []struct {
	name      string
	h         http.HandlerFunc
	http1Only bool
}{
	{"2048 bytes", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), 2048)) }, false},
	{"2049 bytes", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), 2049)) }, false},
	{"2049 bytes in two writes", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("a"), 1000))
		w.Write(bytes.Repeat([]byte("b"), 1049))
	}, false},
	{"4096 bytes", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), 4096)) }, false},
	{"4097 bytes", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), 4097)) }, false},
	{"304 with type and length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "12")
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
		_, err := w.Write([]byte("not sent"))
		if err != http.ErrBodyNotAllowed {
			panic(err)
		}
	}, true},
	{"204 with type and length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusNoContent)
	}, true},
	{"103 before 200", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("final"))
	}, false},
	{"trailers by http.TrailerPrefix", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(http.TrailerPrefix+"X-Checksum", "1") // a trailer, not a bad name
		w.Write(bytes.Repeat([]byte("a"), 3000))
	}, false},
	{"a header name that is no token", func(w http.ResponseWriter, r *http.Request) {
		// An app echoing query keys as header names.
		w.Header().Set("<img/src/onerror=alert('xss')>", "1")
		w.Header().Set("X-Kept", "1")
		w.Write([]byte("ok"))
	}, false},
	{"encoded body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write([]byte("\x1f\x8b\x08\x00 not sniffed"))
	}, false},
	{"HEAD past the buffer", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), 5000)) }, false},
}

func TestResponsesAsHTTPServerShapesThem(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			var logs syncBuffer
			g := gwtest.New(t)
			startWorker(t, g, func(w *Worker) {
				w.HandleFunc("/{i}", func(rw http.ResponseWriter, r *http.Request) {
					i := 0
					fmt.Sscan(r.PathValue("i"), &i)
					responses[i].h(rw, r)
				})
			}, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			c := g.Accept()
			c.Welcome(1 << 20)
			for i, tc := range responses {
				if h2 && tc.http1Only {
					continue
				}
				method := "GET"
				if strings.HasPrefix(tc.name, "HEAD") {
					method = "HEAD"
				}
				srv, client := nativeClient(t, tc.h, h2)
				req, _ := http.NewRequest(method, srv.URL+"/", nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
					t.Fatalf("the native server answered %s", resp.Proto)
				}
				streamed := slices.Equal(resp.TransferEncoding, []string{"chunked"}) ||
					h2 && resp.ContentLength == -1 && method != "HEAD" && len(b) > 0
				native := headView(resp.StatusCode, resp.Header, streamed, b)

				id := uint32(2*i + 1)
				q := c.Request(id, "* /{i}", fmt.Sprintf("/%d", i), true, "i", fmt.Sprint(i))
				q.Method = method
				if h2 {
					q.Headers = append(q.Headers, frame.Field{Name: "via", Value: []byte("2 vyx")})
				}
				c.Send(q)
				if got := vyxView(c.Answer(id)); got != native {
					t.Errorf("%s:\nvyx         %s\nhttp.Server %s", tc.name, got, native)
				}
			}
			if n := strings.Count(logs.String(), "is not a token"); n != 1 || !strings.Contains(logs.String(), "onerror") {
				t.Errorf("the dropped header name was logged %d times, want once, naming it:\n%s", n, logs.String())
			}
		})
	}
}

// A request body without a length is chunked over HTTP/1.1, as http.Server shows it
// (r.TransferEncoding, r.ContentLength -1), and has neither over HTTP/2.
func TestRequestBodyFramingAsHTTPServerShowsIt(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "te=%v length=%d body=%s", r.TransferEncoding, r.ContentLength, b)
	}
	g := gwtest.New(t)
	startWorker(t, g, func(w *Worker) { w.HandleFunc("POST /echo", echo) }, Config{})
	c := g.Accept()
	c.Welcome(1 << 20)
	id := uint32(1)
	for _, h2 := range []bool{false, true} {
		for _, known := range []bool{false, true} {
			srv, client := nativeClient(t, http.HandlerFunc(echo), h2)
			var body io.Reader = io.MultiReader(strings.NewReader("hello")) // no length known
			if known {
				body = strings.NewReader("hello")
			}
			resp, err := client.Post(srv.URL+"/echo", "text/plain", body)
			if err != nil {
				t.Fatal(err)
			}
			native, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			q := c.Request(id, "POST /echo", "/echo", false)
			if known {
				q.Headers = append(q.Headers, frame.Field{Name: "content-length", Value: []byte("5")})
			}
			if h2 {
				q.Headers = append(q.Headers, frame.Field{Name: "via", Value: []byte("2 vyx")})
			}
			c.Send(q)
			c.Send(&frame.Data{StreamID: id, EndStream: true, Data: []byte("hello")})
			if _, got := c.Answer(id); string(got) != string(native) {
				t.Errorf("HTTP/2 %v, length known %v: vyx %q, http.Server %q", h2, known, got, native)
			}
			id += 2
		}
	}
}
