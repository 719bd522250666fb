package protocol

import "github.com/vyx-dev/vyx/sdk-go/internal/frame"

// This file mirrors core/src/features.rs: the protocol extensions (§2.6) named in HELLO's
// features (what the worker's host can do) and WELCOME's (what the gateway will use on the
// connection). An extension's frames and flags are sent only on a connection whose WELCOME
// listed it; unknown names are ignored.
const (
	// FeatureUpgrade: upgraded connections (WebSocket and others) carried over a stream.
	FeatureUpgrade = "upgrade"
	// FeatureTrailers: TRAILERS frames, both directions.
	FeatureTrailers = "trailers"
	// FeatureInformational: INFORMATIONAL (1xx) heads from workers.
	FeatureInformational = "informational"
)

// ValidateFeatures checks a features list against its bounds (§2.6): at most MaxFeatures
// names, each 1..=MaxFeatureLen bytes, none twice. code is the refusal's close code (4001
// for HELLO, 4005 for WELCOME).
func ValidateFeatures(names []string, code frame.CloseCode) error {
	if len(names) > MaxFeatures {
		return bad(code, "features lists %d names; at most %d are allowed", len(names), MaxFeatures)
	}
	for i, name := range names {
		if len(name) == 0 || len(name) > MaxFeatureLen {
			return bad(code, "features[%d] is %d bytes; 1..=%d are allowed", i, len(name), MaxFeatureLen)
		}
		for _, earlier := range names[:i] {
			if earlier == name {
				return bad(code, "features names %q twice", name)
			}
		}
	}
	return nil
}
