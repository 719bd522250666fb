package frame

import "fmt"

// Kind names a decode error kind of PROTOCOL.md §8.1.
type Kind string

// Decode error kinds (PROTOCOL.md §8.1), spelled as in the spec and the vectors.
const (
	FrameTooLarge          Kind = "frame_too_large"
	TruncatedHeader        Kind = "truncated_header"
	UnknownType            Kind = "unknown_type"
	InvalidFlags           Kind = "invalid_flags"
	StreamIDZero           Kind = "stream_id_zero"
	StreamIDNonzero        Kind = "stream_id_nonzero"
	TruncatedPayload       Kind = "truncated_payload"
	TrailingBytes          Kind = "trailing_bytes"
	InvalidMethod          Kind = "invalid_method"
	InvalidTarget          Kind = "invalid_target"
	InvalidHeaderName      Kind = "invalid_header_name"
	InvalidHeaderValue     Kind = "invalid_header_value"
	InvalidParamName       Kind = "invalid_param_name"
	InvalidStatus          Kind = "invalid_status"
	InvalidResetReason     Kind = "invalid_reset_reason"
	InvalidWindowIncrement Kind = "invalid_window_increment"
	InvalidControlPayload  Kind = "invalid_control_payload"
)

// DecodeError says why a WebSocket message is not a valid frame.
//
//	_, err := frame.Decode(msg, frame.MaxFrameSize)
//	var de *frame.DecodeError
//	if errors.As(err, &de) { closeWith(de.CloseCode()) }
type DecodeError struct {
	Kind Kind
	// Type is the frame type byte when the 6-byte header was read (0 otherwise).
	Type byte
	// StreamID is the header's stream id when the header was read.
	StreamID uint32
	// HeaderOK is true when the failure is in the payload (step 6 of §3.2).
	HeaderOK bool
	// Detail is a human-readable detail (may be empty).
	Detail string
}

func (e *DecodeError) Error() string {
	if e.Detail != "" {
		return string(e.Kind) + ": " + e.Detail
	}
	return string(e.Kind)
}

// CloseCode is the close code a receiver without stream context sends for e (§8.1):
// 4006 for frame_too_large, 4001 for an undecodable HELLO payload, 4005 otherwise.
func (e *DecodeError) CloseCode() CloseCode {
	switch {
	case e.Kind == FrameTooLarge:
		return CloseFrameTooLarge
	case e.Kind == InvalidControlPayload && e.Type == TypeHello:
		return CloseBadHello
	}
	return CloseProtocolViolation
}

// IsStreamError reports whether e is confined to one stream: a head (REQUEST, RESPONSE,
// TRAILERS, INFORMATIONAL) whose header is valid but whose payload fails (§3.5, §8). Its
// receiver RESETs that stream protocol_error (received in the wrong direction, or on a
// connection that did not negotiate its extension, the frame is still a connection error).
func (e *DecodeError) IsStreamError() bool {
	switch e.Type {
	case TypeRequest, TypeResponse, TypeTrailers, TypeInformational:
		return e.HeaderOK
	}
	return false
}

// CloseCode is a WebSocket close code of PROTOCOL.md §8.3.
type CloseCode uint16

// Close codes (§8.3).
const (
	CloseNormal             CloseCode = 1000
	CloseGoingAway          CloseCode = 1001
	CloseUnauthorized       CloseCode = 4000
	CloseBadHello           CloseCode = 4001
	CloseUnsupportedVersion CloseCode = 4002
	CloseRouteConflict      CloseCode = 4003
	CloseRouteNotAllowed    CloseCode = 4004
	CloseProtocolViolation  CloseCode = 4005
	CloseFrameTooLarge      CloseCode = 4006
	CloseHandshakeTimeout   CloseCode = 4007
	CloseFlowControl        CloseCode = 4008
	CloseHeartbeatTimeout   CloseCode = 4009
	CloseDrainTimeout       CloseCode = 4010
	CloseInternalError      CloseCode = 4011
)

var closeNames = map[CloseCode]string{
	1000: "normal", 1001: "going_away", 4000: "unauthorized", 4001: "bad_hello",
	4002: "unsupported_version", 4003: "route_conflict", 4004: "route_not_allowed",
	4005: "protocol_violation", 4006: "frame_too_large", 4007: "handshake_timeout",
	4008: "flow_control", 4009: "heartbeat_timeout", 4010: "drain_timeout", 4011: "internal_error",
}

// Name is the spec's name of c, or "" for a code not in §8.3.
func (c CloseCode) Name() string { return closeNames[c] }

func (c CloseCode) String() string {
	if n := c.Name(); n != "" {
		return fmt.Sprintf("%d %s", uint16(c), n)
	}
	return fmt.Sprintf("%d", uint16(c))
}

// IsPermanent reports whether a worker stops instead of retrying after the connection was
// closed with c (§9): 4000–4004. 1000 is retried unless the worker asked for the drain,
// which the caller knows and this function does not.
func (c CloseCode) IsPermanent() bool { return c >= 4000 && c <= 4004 }

// ResetCode is a RESET code of PROTOCOL.md §8.4.
type ResetCode uint32

// RESET codes (§8.4).
const (
	ResetNoError       ResetCode = 0
	ResetCancel        ResetCode = 1
	ResetHandlerError  ResetCode = 2
	ResetTimeout       ResetCode = 3
	ResetRefused       ResetCode = 4
	ResetProtocolError ResetCode = 5
	ResetFlowControl   ResetCode = 6
)

var resetNames = []string{"no_error", "cancel", "handler_error", "timeout", "refused", "protocol_error", "flow_control"}

// Name is the spec's name of c; unknown codes are named handler_error, as they are treated.
func (c ResetCode) Name() string {
	if int64(c) < int64(len(resetNames)) {
		return resetNames[c]
	}
	return "handler_error"
}

func (c ResetCode) String() string { return fmt.Sprintf("%d %s", uint32(c), c.Name()) }

// ResetCodeByName returns the code named name (§8.4), and false for an unknown name.
func ResetCodeByName(name string) (ResetCode, bool) {
	for i, n := range resetNames {
		if n == name {
			return ResetCode(i), true
		}
	}
	return 0, false
}
