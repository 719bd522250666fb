package vyx

// The WebSocket side of a connection (core/src/transport/mod.rs): what the queue
// (transport_queue.go) and the writer (transport_writer.go) share.

import (
	"unicode/utf8"

	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// truncateReason cuts a close reason to the 123 bytes RFC 6455 allows, at a UTF-8
// boundary (core's truncate_reason).
func truncateReason(reason string) string {
	if len(reason) <= protocol.MaxCloseReasonLen {
		return reason
	}
	cut := protocol.MaxCloseReasonLen
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
