package protocol

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// HandshakeError is a failed HELLO, ROUTES or WELCOME check: the close code to send (or
// that the gateway would send) and a human-readable message for ERROR or the log.
type HandshakeError struct {
	Code    frame.CloseCode
	Message string
}

func (e *HandshakeError) Error() string { return e.Code.String() + ": " + e.Message }

func bad(code frame.CloseCode, format string, a ...any) error {
	return &HandshakeError{Code: code, Message: fmt.Sprintf(format, a...)}
}

// IsWorkerID reports whether id is a valid worker id (§2.2): 1..=128 bytes of
// [A-Za-z0-9._:@/-]. An SDK refuses an invalid id before connecting.
//
//	protocol.IsWorkerID("go:api@eu-1/blue") // true
//	protocol.IsWorkerID("go api")           // false
func IsWorkerID(id string) bool {
	if id == "" || len(id) > MaxWorkerIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@/-", c) >= 0) {
			return false
		}
	}
	return true
}

// ValidateHello runs the gateway's HELLO rules 1–8 of §2.4 against the X-Vyx-Worker-Id
// header; the first failure decides the code (4002, else 4001). Rules 9–10 (allow-lists,
// conflicts across worker ids) are gateway policy and not checked here. A worker runs it on
// its own HELLO before connecting, so that a gateway never has to refuse it.
func ValidateHello(h *frame.Hello, headerWorkerID string) error {
	if h.Protocol != ProtocolVersion {
		return bad(frame.CloseUnsupportedVersion, "protocol %d is not supported; this side speaks %d", h.Protocol, ProtocolVersion)
	}
	if h.WorkerID != headerWorkerID {
		return bad(frame.CloseBadHello, "HELLO names worker id %q but the upgrade request named %q", excerpt(h.WorkerID), headerWorkerID)
	}
	if h.MaxConcurrency < 1 || h.MaxConcurrency > MaxConcurrency {
		return bad(frame.CloseBadHello, "max_concurrency %d is outside 1..=%d", h.MaxConcurrency, MaxConcurrency)
	}
	if err := ValidateHelloFields(h.Instance, h.SDK, h.Labels); err != nil {
		return err
	}
	if err := ValidateFeatures(h.Features, frame.CloseBadHello); err != nil {
		return err
	}
	return ValidateRoutes(h.Routes)
}

// ValidateHelloFields checks HELLO's informational fields against their bounds (§2.4 rule
// 3a): instance, sdk, and the labels' count, keys and values. Failure: 4001.
func ValidateHelloFields(instance, sdk string, labels map[string]string) error {
	if len(instance) > MaxInstanceLen {
		return bad(frame.CloseBadHello, "instance is %d bytes; at most %d are allowed", len(instance), MaxInstanceLen)
	}
	if len(sdk) > MaxSDKLen {
		return bad(frame.CloseBadHello, "sdk is %d bytes; at most %d are allowed", len(sdk), MaxSDKLen)
	}
	if len(labels) > MaxLabels {
		return bad(frame.CloseBadHello, "%d labels; at most %d are allowed", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if len(k) > MaxLabelLen {
			return bad(frame.CloseBadHello, "label key %q is %d bytes; at most %d are allowed", excerpt(k), len(k), MaxLabelLen)
		}
		if len(v) > MaxLabelLen {
			return bad(frame.CloseBadHello, "label %q: value is %d bytes; at most %d are allowed", excerpt(k), len(v), MaxLabelLen)
		}
	}
	return nil
}

// excerpt is the start of a field a refusal quotes: the message goes back in ERROR and into
// the log, and the field may be as long as the frame.
func excerpt(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	end := keep
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + "…"
}

// ValidateWelcome is the worker's check of WELCOME (§2.3 step 6) against the
// max_concurrency and features its HELLO asked for: protocol ≠ 1 → 4002 (stop), any other
// value out of range, or a feature the HELLO did not offer → 4005 (retry).
func ValidateWelcome(w *frame.Welcome, askedMaxConcurrency uint64, offeredFeatures []string) error {
	if w.Protocol != ProtocolVersion {
		return bad(frame.CloseUnsupportedVersion, "gateway speaks protocol %d; this worker speaks %d", w.Protocol, ProtocolVersion)
	}
	pv := frame.CloseProtocolViolation
	switch {
	case w.HeartbeatMS < 1 || w.HeartbeatMS > MaxWindow:
		return bad(pv, "invalid WELCOME: heartbeat_ms %d is outside 1..=%d", w.HeartbeatMS, MaxWindow)
	case w.InitialWindow < 1 || w.InitialWindow > MaxWindow:
		return bad(pv, "invalid WELCOME: initial_window %d is outside 1..=%d", w.InitialWindow, MaxWindow)
	case w.MaxFrameSize != MaxFrameSize:
		return bad(pv, "invalid WELCOME: max_frame_size %d is not %d, the only value of protocol 1", w.MaxFrameSize, MaxFrameSize)
	case w.MaxConcurrency < 1 || w.MaxConcurrency > askedMaxConcurrency:
		return bad(pv, "invalid WELCOME: max_concurrency %d is outside 1..=%d (the HELLO's)", w.MaxConcurrency, askedMaxConcurrency)
	case w.Connections < 1 || w.Connections > MaxConnections:
		return bad(pv, "invalid WELCOME: connections %d is outside 1..=%d", w.Connections, MaxConnections)
	}
	if err := ValidateFeatures(w.Features, pv); err != nil {
		return bad(pv, "invalid WELCOME: %s", err.(*HandshakeError).Message)
	}
	for _, f := range w.Features {
		if !slices.Contains(offeredFeatures, f) {
			return bad(pv, "invalid WELCOME: features lists %q, which the HELLO did not offer", f)
		}
	}
	return nil
}

// ValidateRoutes checks one route set (HELLO or ROUTES, §2.4 rules 4–8): at most 1024
// routes, ids 0..=65535 and unique, methods, patterns, and no two routes with the same
// method and the same shape. Failure: 4001.
func ValidateRoutes(routes []frame.Route) error {
	if len(routes) > MaxRoutes {
		return bad(frame.CloseBadHello, "%d routes declared; at most %d are allowed", len(routes), MaxRoutes)
	}
	ids := make(map[uint64]bool, len(routes))
	shapes := make(map[[2]string]bool, len(routes))
	for _, r := range routes {
		if r.ID > MaxRouteID {
			return bad(frame.CloseBadHello, "route id %d is outside 0..=65535", r.ID)
		}
		if ids[r.ID] {
			return bad(frame.CloseBadHello, "route id %d is used twice", r.ID)
		}
		ids[r.ID] = true
		if len(r.Method) > MaxMethodLen {
			return bad(frame.CloseBadHello, "route %d: method is %d bytes; at most %d are allowed", r.ID, len(r.Method), MaxMethodLen)
		}
		if !IsRouteMethod(r.Method) {
			return bad(frame.CloseBadHello, "route %d: method %q must be an upper-case token or \"*\"", r.ID, r.Method)
		}
		shape, err := PatternShape(r.Path)
		if err != nil {
			// The reason first: a close frame's reason keeps 123 bytes of it.
			return bad(frame.CloseBadHello, "route %d: path %v: %q (%d bytes)", r.ID, err, excerpt(r.Path), len(r.Path))
		}
		key := [2]string{r.Method, shape}
		if shapes[key] {
			return bad(frame.CloseBadHello, "route %d: %s %s: declared twice", r.ID, r.Method, shape)
		}
		shapes[key] = true
	}
	return nil
}

// IsRouteMethod reports whether m is a route method: "*" or 1+ tchar with no lowercase letter.
func IsRouteMethod(m string) bool {
	if m == "*" {
		return true
	}
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !frame.IsTchar(m[i]) || (m[i] >= 'a' && m[i] <= 'z') {
			return false
		}
	}
	return true
}
