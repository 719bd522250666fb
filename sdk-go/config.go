package vyx

// The worker's configuration (core/src/config.rs): its fields, the environment variables
// that fill what is left empty, and the defaults of the rest.

import (
	"log/slog"
	"strings"
	"time"
)

// Environment variables read when a Config field is left empty (local mode sets them for
// the workers it starts). VYX_CONNECT is a comma-separated list.
const (
	EnvConnect  = "VYX_CONNECT"
	EnvWorkerID = "VYX_WORKER_ID"
	EnvToken    = "VYX_TOKEN"
	EnvCAFile   = "VYX_CA_FILE"
)

// What a Config left at zero takes: the same numbers in every vyx SDK (vyx-core's
// config module; spec/vectors/defaults.json holds both to them).
const (
	// DefaultMaxConcurrency is Config.MaxConcurrency's default.
	DefaultMaxConcurrency = 1024
	// DefaultConnectTimeout is Config.ConnectTimeout's default.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultDrainTimeout is Config.DrainTimeout's default.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultResolveInterval is Config.ResolveInterval's default.
	DefaultResolveInterval = 30 * time.Second
)

// splitConnect is VYX_CONNECT's list: entries separated by commas, spaces around them
// dropped (an empty entry stays, for NewWorker to name).
func splitConnect(list string) []string {
	entries := strings.Split(list, ",")
	for i, e := range entries {
		entries[i] = strings.TrimSpace(e)
	}
	return entries
}

// Config configures a Worker. Empty fields take their defaults: Connect, ID, Token and
// CAFile from VYX_CONNECT, VYX_WORKER_ID, VYX_TOKEN and VYX_CA_FILE.
type Config struct {
	// Connect is the gateways, each ws://host:port, wss://host:port or a full registration
	// URL. The worker holds a session to each, and to each address a host name resolves to;
	// to one address, as many as its gateway's WELCOME asks for (one per gateway shard, so
	// that a request is served on the core that took it; PROTOCOL.md §9.1).
	Connect []string
	// ID is the worker id: 1..=128 bytes of A-Z a-z 0-9 . _ : @ / -.
	ID string
	// Token is sent as Authorization: Bearer <token> when not empty.
	Token string
	// MaxConcurrency is how many requests one connection serves at once (1..=65535,
	// default DefaultMaxConcurrency, 1024): each session has its own.
	MaxConcurrency int
	// Labels are informational (the gateway's admin view and metrics).
	Labels map[string]string
	// CAFile is a PEM file of CAs trusted for wss:// besides the system's roots.
	CAFile string
	// Logger receives the worker's logs (default slog.Default()).
	Logger *slog.Logger
	// Instance distinguishes this process among replicas (default: host name and pid).
	Instance string
	// ConnectTimeout bounds one dial: TCP, TLS and upgrade (default
	// DefaultConnectTimeout, 10 s).
	ConnectTimeout time.Duration
	// DrainTimeout is the grace period in-flight requests get when Start's context ends,
	// or when Shutdown's context has no deadline (default DefaultDrainTimeout, 30 s).
	DrainTimeout time.Duration
	// OnState receives every change of the worker's state, in order, none dropped, on a
	// goroutine of its own: Connected while at least one session is (Worker.State).
	OnState func(State)
	// Resolver turns gateway host names into addresses (default: net.DefaultResolver).
	Resolver Resolver
	// ResolveInterval is how often host names are resolved again (default
	// DefaultResolveInterval, 30 s); they are also resolved again when a session fails.
	ResolveInterval time.Duration
}
