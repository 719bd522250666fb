package frameworks

// Apps people already have — an http.ServeMux, a chi router, a gin engine — mounted under
// a prefix with Worker.Handle see the request as http.Server behind a proxy gives it: the
// full original path and raw path, the query, the host, the client address.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"

	vyx "github.com/vyx-dev/vyx/sdk-go"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// start runs a worker against g until the test ends.
func start(t *testing.T, g *gwtest.Gateway, setup func(*vyx.Worker)) {
	t.Helper()
	w, err := vyx.NewWorker(vyx.Config{Connect: []string{g.URL()}, ID: "test:frameworks",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	setup(w)
	done := make(chan error, 1)
	go func() { done <- w.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), gwtest.Wait)
		defer cancel()
		_ = w.Shutdown(ctx)
		<-done
	})
}

// seen is what an app saw of a request, as JSON-free text for the assertions.
func seen(r *http.Request, param string) string {
	return fmt.Sprintf("path=%s raw=%s query=%s host=%s remote=%s param=%s x=%s",
		r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.RemoteAddr, param, r.Header.Get("X-Multi"))
}

func TestMountedApps(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, seen(r, r.PathValue("id")))
	})
	router := chi.NewRouter()
	router.Get("/chi/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, seen(r, chi.URLParam(r, "id")))
	})
	engine := gin.New()
	engine.GET("/gin/users/:id", func(c *gin.Context) { c.String(200, seen(c.Request, c.Param("id"))) })

	g := gwtest.New(t)
	start(t, g, func(w *vyx.Worker) {
		w.Handle("/api/{*rest}", mux)
		w.Handle("/chi/{rest...}", router) // Go's catch-all spelling works too
		w.Handle("/gin/{*rest}", engine)
	})
	c := g.Accept()
	c.Welcome(0)
	// gin routes on the decoded path (its default), so its target has no %2F.
	for i, app := range []string{"api", "chi", "gin"} {
		id := uint32(2*i + 1)
		raw, decoded, param := "/"+app+"/users/a%2Fb", "/"+app+"/users/a/b", "a/b"
		switch app {
		case "chi": // chi matches on RawPath when there is one, as behind http.Server
			param = "a%2Fb"
		case "gin":
			raw, decoded, param = "/gin/users/caf%C3%A9", "/gin/users/café", "café"
		}
		route := "* /" + app + "/{*rest}"
		c.Send(c.Forwarded(id, route, raw+"?x=1&y=%20", "rest", strings.TrimPrefix(decoded, "/"+app+"/")))
		r, body := c.Answer(id)
		want := "path=" + decoded + " raw=" + raw + " query=x=1&y=%20 host=api.example:8080 " +
			"remote=198.51.100.7:0 param=" + param + " x=1"
		if r.Status != 200 || string(body) != want {
			t.Errorf("%s: %d %q\nwant %q", app, r.Status, body, want)
		}
		if ct := gwtest.Header(r, "content-type"); len(ct) != 1 || !strings.HasPrefix(ct[0], "text/plain") {
			t.Errorf("%s: content-type %v", app, ct)
		}
	}
	// The mux's own 404 for a path under the prefix it does not serve.
	c.Send(c.Forwarded(7, "* /api/{*rest}", "/api/nothing", "rest", "nothing"))
	if r, _ := c.Answer(7); r.Status != 404 {
		t.Errorf("mux 404: got %d", r.Status)
	}
}

// Patterns mean on a Worker what they mean on http.ServeMux: the routes a worker declares
// for "/b/{$}", a subtree "/e/" and "/f/" whose root the app also declares, and the answers
// to requests the gateway routes to them, compared with a ServeMux serving the same patterns.
func TestServeMuxPatterns(t *testing.T) {
	mux := http.NewServeMux()
	setup := func(handle func(pattern string, h http.HandlerFunc)) {
		handle("/b/{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b-exact") })
		handle("GET /e/", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "e-subtree "+r.URL.Path+" "+r.PathValue("vyx-subtree"))
		})
		handle("/f/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "f-subtree") })
		handle("/f", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "f-root") })
	}
	setup(func(p string, h http.HandlerFunc) { mux.HandleFunc(p, h) })
	g := gwtest.New(t)
	start(t, g, func(w *vyx.Worker) { setup(func(p string, h http.HandlerFunc) { w.HandleFunc(p, h) }) })
	c := g.Accept()
	c.Welcome(0)
	var declared []string
	for _, r := range c.Hello.Routes {
		declared = append(declared, r.Method+" "+r.Path)
	}
	want := []string{"* /b/", "GET /e/{*vyx-subtree}", "GET /e", "* /f/{*vyx-subtree}", "* /f"}
	if strings.Join(declared, ", ") != strings.Join(want, ", ") {
		t.Fatalf("declared %v\nwant     %v", declared, want)
	}
	// Each request as the gateway routes it (§2.5.2), answered by the worker and by the mux.
	for i, tc := range []struct{ route, target, rest string }{
		{"* /b/", "/b/", ""},
		{"GET /e/{*vyx-subtree}", "/e/", ""},
		{"GET /e/{*vyx-subtree}", "/e/x/y?q=1", "x/y"},
		{"GET /e", "/e?q=1", ""},
		{"* /f/{*vyx-subtree}", "/f/z", "z"},
		{"* /f", "/f", ""},
	} {
		id := uint32(2*i + 1)
		params := []string{}
		if strings.Contains(tc.route, "{*") {
			params = []string{"vyx-subtree", tc.rest}
		}
		c.Send(c.Forwarded(id, tc.route, tc.target, params...))
		r, body := c.Answer(id)
		native := httptest.NewRecorder()
		mux.ServeHTTP(native, httptest.NewRequest("GET", tc.target, nil))
		if int(r.Status) != native.Code || string(body) != native.Body.String() {
			t.Errorf("%s: through vyx %d %q, ServeMux %d %q", tc.target, r.Status, body, native.Code, native.Body.String())
		}
		if loc := native.Header().Get("Location"); loc != "" {
			if got := gwtest.Header(r, "location"); len(got) != 1 || got[0] != loc {
				t.Errorf("%s: location %v, ServeMux %q", tc.target, got, loc)
			}
		}
	}
}
