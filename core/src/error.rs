//! Error kinds of the protocol: frame decode errors, WebSocket close codes and RESET codes.

/// Why a WebSocket message is not a valid frame. Every kind closes the connection with
/// [`CloseCode::ProtocolViolation`], except [`DecodeError::FrameTooLarge`]
/// ([`CloseCode::FrameTooLarge`]) and a HELLO payload that does not decode
/// ([`CloseCode::BadHello`]); see [`DecodeError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },
    #[error("frame shorter than the 6-byte header ({0} bytes)")]
    TruncatedHeader(usize),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("flags 0x{flags:02x} not allowed on a {frame} frame")]
    InvalidFlags { frame: &'static str, flags: u8 },
    #[error("{0} frame on stream 0")]
    StreamIdZero(&'static str),
    #[error("{frame} frame on stream {stream_id}; control frames use stream 0")]
    StreamIdNonzero { frame: &'static str, stream_id: u32 },
    #[error("{0} payload ends early")]
    TruncatedPayload(&'static str),
    #[error("{0} payload has trailing bytes")]
    TrailingBytes(&'static str),
    #[error("invalid method")]
    InvalidMethod,
    #[error("invalid request target")]
    InvalidTarget,
    #[error("invalid header name")]
    InvalidHeaderName,
    #[error("invalid header value (a control byte other than HTAB)")]
    InvalidHeaderValue,
    #[error("invalid path parameter name")]
    InvalidParamName,
    #[error("invalid response status {0}")]
    InvalidStatus(u16),
    #[error("RESET reason is not UTF-8")]
    InvalidResetReason,
    #[error("invalid WINDOW increment {0}")]
    InvalidWindowIncrement(u32),
    #[error("invalid {frame} payload: {reason}")]
    InvalidControlPayload { frame: &'static str, reason: String },
}

impl DecodeError {
    /// The error's name as used in `spec/vectors/malformed.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::FrameTooLarge { .. } => "frame_too_large",
            DecodeError::TruncatedHeader(_) => "truncated_header",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::InvalidFlags { .. } => "invalid_flags",
            DecodeError::StreamIdZero(_) => "stream_id_zero",
            DecodeError::StreamIdNonzero { .. } => "stream_id_nonzero",
            DecodeError::TruncatedPayload(_) => "truncated_payload",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
            DecodeError::InvalidMethod => "invalid_method",
            DecodeError::InvalidTarget => "invalid_target",
            DecodeError::InvalidHeaderName => "invalid_header_name",
            DecodeError::InvalidHeaderValue => "invalid_header_value",
            DecodeError::InvalidParamName => "invalid_param_name",
            DecodeError::InvalidStatus(_) => "invalid_status",
            DecodeError::InvalidResetReason => "invalid_reset_reason",
            DecodeError::InvalidWindowIncrement(_) => "invalid_window_increment",
            DecodeError::InvalidControlPayload { .. } => "invalid_control_payload",
        }
    }

    /// The close code a receiver sends when it cannot decode a frame. A HELLO whose JSON
    /// does not decode is `bad_hello`, which the worker does not retry: the same HELLO
    /// would fail again.
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::FrameTooLarge { .. } => CloseCode::FrameTooLarge,
            DecodeError::InvalidControlPayload { frame: "HELLO", .. } => CloseCode::BadHello,
            _ => CloseCode::ProtocolViolation,
        }
    }
}

/// WebSocket close codes of the protocol (spec/PROTOCOL.md, "Close codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    Unauthorized = 4000,
    BadHello = 4001,
    UnsupportedVersion = 4002,
    RouteConflict = 4003,
    RouteNotAllowed = 4004,
    ProtocolViolation = 4005,
    FrameTooLarge = 4006,
    HandshakeTimeout = 4007,
    FlowControl = 4008,
    HeartbeatTimeout = 4009,
    DrainTimeout = 4010,
    InternalError = 4011,
}

impl CloseCode {
    pub fn from_u16(code: u16) -> Option<CloseCode> {
        use CloseCode::*;
        Some(match code {
            1000 => Normal,
            1001 => GoingAway,
            4000 => Unauthorized,
            4001 => BadHello,
            4002 => UnsupportedVersion,
            4003 => RouteConflict,
            4004 => RouteNotAllowed,
            4005 => ProtocolViolation,
            4006 => FrameTooLarge,
            4007 => HandshakeTimeout,
            4008 => FlowControl,
            4009 => HeartbeatTimeout,
            4010 => DrainTimeout,
            4011 => InternalError,
            _ => return None,
        })
    }

    /// The code's name, as written in the spec and in logs.
    pub fn name(self) -> &'static str {
        use CloseCode::*;
        match self {
            Normal => "normal",
            GoingAway => "going_away",
            Unauthorized => "unauthorized",
            BadHello => "bad_hello",
            UnsupportedVersion => "unsupported_version",
            RouteConflict => "route_conflict",
            RouteNotAllowed => "route_not_allowed",
            ProtocolViolation => "protocol_violation",
            FrameTooLarge => "frame_too_large",
            HandshakeTimeout => "handshake_timeout",
            FlowControl => "flow_control",
            HeartbeatTimeout => "heartbeat_timeout",
            DrainTimeout => "drain_timeout",
            InternalError => "internal_error",
        }
    }

    /// Whether a worker refused with this code must stop instead of reconnecting: retrying
    /// cannot succeed until someone changes the worker or the gateway's configuration.
    pub fn is_permanent(self) -> bool {
        use CloseCode::*;
        matches!(
            self,
            Unauthorized | BadHello | UnsupportedVersion | RouteConflict | RouteNotAllowed
        )
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", *self as u16, self.name())
    }
}

/// Codes carried by a RESET frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ResetCode {
    /// The sender is done and does not need the rest of the peer's body.
    NoError = 0,
    /// The client went away or stopped reading.
    Cancel = 1,
    /// The handler failed.
    HandlerError = 2,
    /// A deadline passed.
    Timeout = 3,
    /// The stream was not processed at all; retrying it is safe.
    Refused = 4,
    /// The peer broke the stream's rules.
    ProtocolError = 5,
    /// The peer sent more than its window.
    FlowControl = 6,
}

impl ResetCode {
    /// Unknown codes are treated as [`ResetCode::HandlerError`], as the spec says.
    pub fn from_u32(code: u32) -> ResetCode {
        match code {
            0 => ResetCode::NoError,
            1 => ResetCode::Cancel,
            3 => ResetCode::Timeout,
            4 => ResetCode::Refused,
            5 => ResetCode::ProtocolError,
            6 => ResetCode::FlowControl,
            _ => ResetCode::HandlerError,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ResetCode::NoError => "no_error",
            ResetCode::Cancel => "cancel",
            ResetCode::HandlerError => "handler_error",
            ResetCode::Timeout => "timeout",
            ResetCode::Refused => "refused",
            ResetCode::ProtocolError => "protocol_error",
            ResetCode::FlowControl => "flow_control",
        }
    }
}
