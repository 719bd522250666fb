package protocol

import "github.com/vyx-dev/vyx/sdk-go/internal/frame"

// Limits and defaults of PROTOCOL.md §10.
const (
	ProtocolVersion      = 1
	MaxFrameSize         = frame.MaxFrameSize
	MaxRoutes            = 1024
	MaxRouteID           = 65535
	MaxConcurrency       = 65535
	MaxConnections       = 64 // WELCOME connections: one per gateway shard
	MaxWorkerIDLen       = 128
	MaxPatternLen        = 4096
	MaxPatternSegments   = 128
	MaxMethodLen         = 32
	MaxInstanceLen       = 256
	MaxSDKLen            = 128
	MaxLabels            = 64
	MaxLabelLen          = 256
	MaxFeatures          = 16
	MaxFeatureLen        = 32
	MaxWindow            = frame.MaxWindow
	DefaultHeartbeatMS   = 5000
	DefaultInitialWindow = 262144
	HandshakeTimeoutMS   = 10000
	HeartbeatMisses      = 3
	MaxCloseReasonLen    = 123
	WorkerIDHeader       = "X-Vyx-Worker-Id"
	Subprotocol          = "vyx.1"
	BackoffBaseMS        = 100
	BackoffCapMS         = 10000
	BackoffStableMS      = 10000
	// MaxTrailersSize bounds a TRAILERS payload (§3.10); trailers are not flow-controlled.
	MaxTrailersSize = 65536
	// MaxInformational is the most INFORMATIONAL (1xx) heads a stream carries (§3.11).
	MaxInformational = 8
)
