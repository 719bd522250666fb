package vyx

// The net/http API: a Worker serves http.Handlers through the gateway, as an http.Server
// serves them through a listener.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// Version is this SDK's version, sent in HELLO as sdk "vyx-go/<Version>".
const Version = "0.1.0"

// ErrAlreadyStarted is returned by a second Start: a worker runs once.
var ErrAlreadyStarted = errors.New("vyx: worker already started")

// ErrNeverConnected is matched (errors.Is) by Start's error when the worker stopped
// before the gateway ever welcomed it; the error also wraps the last failed attempt (a
// *ConnectError), so that a wrong address or a gateway that is down is not mistaken for
// a clean drain.
var ErrNeverConnected = errors.New("vyx: the worker never connected")

type route struct {
	method, path string
	// pattern is Request.Pattern, made once: "METHOD /path", or the path for any method.
	pattern    string
	handler    http.Handler
	idempotent bool
	// redirect: the redirect a subtree pattern adds for its root without the slash, replaced by
	// a route the app declares for that root.
	redirect bool
}

// Worker serves routes through a vyx gateway. Create it with NewWorker, declare routes,
// then Start it.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	routes   []route
	shapes   map[[2]string]string
	routeIDs map[uint16]bool
	started  bool
	state    State
	states   *stateQueue
	sessions sessionStates
	targets  []target
	// registered is set by the first WELCOME; lastFailure is the latest failed attempt
	// (for ErrNeverConnected).
	registered  atomic.Bool
	lastFailure error
	// badNameLogged: a response header name that was no token has been logged (http.go).
	badNameLogged atomic.Bool
	handlers      handlers

	base         context.Context // handlers' parent: Start's context without its cancellation
	stopDeadline time.Duration   // set once, before stopCtx ends
	stopOnce     sync.Once
	stopCtx      context.Context
	stopNow      context.CancelFunc
	done         chan struct{}
}

// NewWorker checks cfg (after the environment defaults) and returns a worker with no
// routes yet.
//
//	w, err := vyx.NewWorker(vyx.Config{ID: "go:api"}) // VYX_CONNECT names the gateway
func NewWorker(cfg Config) (*Worker, error) {
	env := func(field *string, key string) {
		if *field == "" {
			*field = os.Getenv(key)
		}
	}
	noConnect := func() bool { return !slices.ContainsFunc(cfg.Connect, func(c string) bool { return c != "" }) }
	if v := os.Getenv(EnvConnect); noConnect() && v != "" {
		cfg.Connect = splitConnect(v)
	}
	env(&cfg.ID, EnvWorkerID)
	env(&cfg.Token, EnvToken)
	env(&cfg.CAFile, EnvCAFile)
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.ResolveInterval <= 0 {
		cfg.ResolveInterval = DefaultResolveInterval
	}
	if cfg.Resolver == nil {
		cfg.Resolver = systemResolver
	}
	if cfg.Instance == "" {
		host, _ := os.Hostname()
		// Within the HELLO bound (MaxInstanceLen) with the pid and nonce after it.
		if len(host) > 200 {
			host = host[:200]
		}
		cfg.Instance = fmt.Sprintf("%s-%d-%x", host, os.Getpid(), randomSeed()&0xffffff)
	}
	if noConnect() {
		return nil, fmt.Errorf("vyx: no gateway address: set Config.Connect or %s", EnvConnect)
	}
	targets, err := parseTargets(cfg.Connect)
	if err != nil {
		return nil, err
	}
	switch {
	case !protocol.IsWorkerID(cfg.ID):
		return nil, fmt.Errorf("vyx: worker id %q must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ / - (set Config.ID or %s)", cfg.ID, EnvWorkerID)
	case cfg.MaxConcurrency < 1 || cfg.MaxConcurrency > protocol.MaxConcurrency:
		return nil, fmt.Errorf("vyx: MaxConcurrency %d is outside 1..=%d", cfg.MaxConcurrency, protocol.MaxConcurrency)
	case strings.ContainsAny(cfg.Token, "\r\n\x00"):
		return nil, errors.New("vyx: the token holds characters a header cannot carry")
	}
	// Start checks the whole HELLO again; this tells a bad field at once.
	if err := protocol.ValidateHelloFields(cfg.Instance, "vyx-go/"+Version, cfg.Labels); err != nil {
		return nil, fmt.Errorf("vyx: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	stopCtx, stopNow := context.WithCancel(context.Background())
	return &Worker{cfg: cfg, log: log, shapes: map[[2]string]string{}, routeIDs: map[uint16]bool{},
		stopCtx: stopCtx, stopNow: stopNow, done: make(chan struct{}), targets: targets,
		state: State{Kind: Connecting}, sessions: sessionStates{live: map[int]GatewayState{}}}, nil
}

// parseTargets is the Connect list taken apart; a bad entry is an error naming it.
func parseTargets(connect []string) ([]target, error) {
	targets := make([]target, 0, len(connect))
	for i, entry := range connect {
		bad := func(why string) error {
			return fmt.Errorf("vyx: gateway address %d of %d (%q) %s", i+1, len(connect), entry, why)
		}
		if entry == "" {
			return nil, bad("is empty")
		}
		t, err := parseTarget(entry)
		if err != nil {
			return nil, bad(err.Error())
		}
		if slices.ContainsFunc(targets, func(o target) bool { return o.url == t.url }) {
			return nil, bad("is listed twice")
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// Handle serves pattern with h. pattern is "[METHOD ]PATH": without a method the route
// takes every method (a "*" route). PATH uses {name} for one segment and a last {*rest}
// (or Go's {rest...}) for the rest of the path; the handler reads them with r.PathValue.
// As on http.ServeMux, a PATH ending in "/" is a subtree (itself and every path below it;
// its root without the slash redirects to it) and "/{$}" matches only the path with the
// slash.
// A GET route also serves HEAD (the body is dropped). The handler sees the request's full
// original path in r.URL, so a whole http.ServeMux, chi router or gin engine can be mounted:
//
//	w.Handle("/api/{*rest}", mux) // mux sees /api/users/7?x=1 as sent
//
// Like http.ServeMux, Handle panics on an invalid or duplicate pattern, and after Start.
func (w *Worker) Handle(pattern string, h http.Handler) {
	method, path := "*", pattern
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		method, path = pattern[:i], strings.TrimLeft(pattern[i+1:], " ")
	}
	path, subtreeRoot := protocolPath(path)
	if h == nil {
		panic("vyx: nil handler for " + pattern)
	}
	if len(method) > protocol.MaxMethodLen || !protocol.IsRouteMethod(method) {
		panic(fmt.Sprintf("vyx: pattern %q: method %q must be an upper-case token", pattern, method))
	}
	shape, err := protocol.PatternShape(path)
	if err != nil {
		panic(fmt.Sprintf("vyx: pattern %q: path %v", pattern, err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		panic("vyx: Handle(" + pattern + ") after Start: declare every route before")
	}
	w.add(pattern, method, path, shape, h, false)
	if subtreeRoot != "" {
		if rootShape, err := protocol.PatternShape(subtreeRoot); err == nil {
			w.add(pattern, method, subtreeRoot, rootShape, subtreeRedirect(pattern), true)
		}
	}
}

// add declares one route, under w.mu. A redirect a subtree added gives way to a route the
// app declares for the same root, and is not added where the app declared one.
func (w *Worker) add(pattern, method, path, shape string, h http.Handler, redirect bool) {
	key := [2]string{method, shape}
	if other, dup := w.shapes[key]; dup {
		for i := range w.routes {
			rt := &w.routes[i]
			if rt.method == method && rt.path == path && rt.redirect && !redirect {
				*rt = newRoute(method, path, h, false)
				w.shapes[key] = pattern
				return
			}
		}
		if redirect {
			return
		}
		panic(fmt.Sprintf("vyx: pattern %q conflicts with %q (same method and shape)", pattern, other))
	}
	if len(w.routes) >= protocol.MaxRoutes {
		panic(fmt.Sprintf("vyx: more than %d routes", protocol.MaxRoutes))
	}
	w.shapes[key] = pattern
	w.routeIDs[uint16(len(w.routes))] = true
	w.routes = append(w.routes, newRoute(method, path, h, redirect))
}

func newRoute(method, path string, h http.Handler, redirect bool) route {
	pattern := method + " " + path
	if method == "*" {
		pattern = path
	}
	return route{method: method, path: path, pattern: pattern, handler: h, redirect: redirect}
}

// Idempotent declares the route of pattern (as given to Handle) idempotent: repeating one
// of its requests is safe, so the gateway may retry it on another replica when the first
// is lost before answering, whatever its method (GET, HEAD, OPTIONS, PUT, DELETE and TRACE
// are retried anyway). It panics when no route has that pattern, and after Start.
//
//	w.Post("/orders", createOrder) // keyed by an Idempotency-Key the handler checks
//	w.Idempotent("POST /orders")
func (w *Worker) Idempotent(pattern string) {
	method, path := "*", pattern
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		method, path = pattern[:i], strings.TrimLeft(pattern[i+1:], " ")
	}
	path, _ = protocolPath(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		panic("vyx: Idempotent(" + pattern + ") after Start: declare every route before")
	}
	for i := range w.routes {
		if w.routes[i].method == method && w.routes[i].path == path {
			w.routes[i].idempotent = true
			return
		}
	}
	panic("vyx: Idempotent(" + pattern + "): no such route")
}

// HandleFunc is Handle for a function.
func (w *Worker) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	w.Handle(pattern, http.HandlerFunc(h))
}

// Get serves GET (and HEAD) requests for path.
func (w *Worker) Get(path string, h http.HandlerFunc) { w.Handle("GET "+path, h) }

// Head serves HEAD requests for path (a GET route serves them too when there is none).
func (w *Worker) Head(path string, h http.HandlerFunc) { w.Handle("HEAD "+path, h) }

// Any serves every method for path, as Handle(path, h) does.
func (w *Worker) Any(path string, h http.HandlerFunc) { w.Handle(path, h) }

// Post serves POST requests for path.
func (w *Worker) Post(path string, h http.HandlerFunc) { w.Handle("POST "+path, h) }

// Put serves PUT requests for path.
func (w *Worker) Put(path string, h http.HandlerFunc) { w.Handle("PUT "+path, h) }

// Patch serves PATCH requests for path.
func (w *Worker) Patch(path string, h http.HandlerFunc) { w.Handle("PATCH "+path, h) }

// Delete serves DELETE requests for path.
func (w *Worker) Delete(path string, h http.HandlerFunc) { w.Handle("DELETE "+path, h) }

// State is the worker's current state: Connected while at least one session is (the
// worker is ready), Draining once stopping, otherwise the latest state of a session still
// trying; Stopped or Failed when every session has ended. Gateways has each session's.
func (w *Worker) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

func (w *Worker) setState(s State) {
	w.mu.Lock()
	w.state = s
	w.mu.Unlock()
	w.states.push(s)
}

// Start registers with the gateway and serves until the worker has drained: after
// Shutdown, or when ctx is done (then in-flight requests get Config.DrainTimeout). It
// reconnects with backoff on its own. It returns nil after a drain; a *ConnectError when
// the gateway refused the worker for good (bad token, route conflict, HTTP
// 400/401/403/404: errors.Is matches ErrUnauthorized, ErrNoEndpoint, ErrRejected or
// ErrRefused); and an error matching ErrNeverConnected, wrapping the last failed attempt,
// when it was stopped before the gateway ever welcomed it. Handlers' contexts keep ctx's
// values but not its cancellation, so that a drain lets them finish.
//
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	if err := w.Start(ctx); err != nil { log.Fatal(err) }
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return ErrAlreadyStarted
	}
	w.started = true
	w.base = context.WithoutCancel(ctx)
	w.states = newStateQueue(w.cfg.OnState)
	routes := make([]frame.Route, len(w.routes))
	for i, r := range w.routes {
		routes[i] = frame.Route{ID: uint64(i), Method: r.method, Path: r.path, Idempotent: r.idempotent}
	}
	w.mu.Unlock()
	defer close(w.done)
	w.setState(State{Kind: Connecting})

	tc, err := tlsConfig(w.cfg.CAFile)
	if err != nil {
		err = fmt.Errorf("vyx: %w", err)
		w.setState(State{Kind: Failed, Err: err})
		w.states.close()
		return err
	}
	header := http.Header{}
	header.Set(protocol.WorkerIDHeader, w.cfg.ID)
	if w.cfg.Token != "" {
		header.Set("Authorization", "Bearer "+w.cfg.Token)
	}
	d := &dialer{
		header:  header,
		tls:     tc,
		timeout: w.cfg.ConnectTimeout,
		hello: &frame.Hello{Protocol: protocol.ProtocolVersion, WorkerID: w.cfg.ID, Instance: w.cfg.Instance,
			SDK: "vyx-go/" + Version, MaxConcurrency: uint64(w.cfg.MaxConcurrency), Routes: routes, Labels: w.cfg.Labels,
			// What this host serves end to end (§2.6): Hijack (upgrades), Request.Trailer
			// and a handler's trailers, WriteHeader with a 1xx.
			Features: []string{protocol.FeatureUpgrade, protocol.FeatureTrailers, protocol.FeatureInformational}},
	}
	if err := protocol.ValidateHello(d.hello, w.cfg.ID); err != nil {
		err = fmt.Errorf("vyx: %w", err)
		w.setState(State{Kind: Failed, Err: err})
		w.states.close()
		return err
	}

	stopWatch := context.AfterFunc(ctx, func() { w.requestStop(w.cfg.DrainTimeout) })
	defer stopWatch()
	w.handlers.serve = w.serveRequest
	defer w.handlers.stop()
	err = w.runGateways(w.stopCtx, d, w.targets)
	if err == nil && !w.registered.Load() {
		err = w.neverConnected()
	}
	if err != nil {
		w.setState(State{Kind: Failed, Err: err})
	} else {
		w.setState(State{Kind: Stopped})
	}
	w.states.close()
	return err
}

// neverConnected is Start's error when it was stopped before any gateway welcomed it.
func (w *Worker) neverConnected() error {
	w.mu.Lock()
	last := w.lastFailure
	w.mu.Unlock()
	to := strings.Join(w.cfg.Connect, ", ")
	if last == nil {
		return fmt.Errorf("%w to %s before it was stopped", ErrNeverConnected, to)
	}
	return fmt.Errorf("%w to %s before it was stopped; last attempt: %w", ErrNeverConnected, to, last)
}

// requestStop starts the drain once: every connection sends DRAIN with deadline.
func (w *Worker) requestStop(deadline time.Duration) {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.stopDeadline = deadline
		w.mu.Unlock()
		w.stopNow()
	})
}

// Shutdown drains the worker, mirroring http.Server.Shutdown: the gateway sends it no new
// requests, in-flight ones finish (until ctx's deadline, else Config.DrainTimeout), then
// the connection closes and Start returns. Shutdown waits for that, or returns ctx.Err().
// A worker not started yet never starts (its Start returns an ErrNeverConnected error).
func (w *Worker) Shutdown(ctx context.Context) error {
	grace := w.cfg.DrainTimeout
	if dl, ok := ctx.Deadline(); ok {
		grace = max(time.Until(dl), 0)
	}
	w.requestStop(grace)
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
