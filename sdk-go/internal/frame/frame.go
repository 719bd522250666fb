// Package frame is the vyx v1 wire codec (PROTOCOL.md §3): the 6-byte frame header, the
// binary stream frames and the JSON control frames, with the decode errors of §8.1.
// It mirrors core/src/frame/ of the Rust core file for file (mod.rs is this file).
//
// Decoding checks in the order of §3.2 and reports the first failure:
//
//	f, err := frame.Decode(msg, frame.MaxFrameSize)
//	if err != nil { /* *DecodeError: err.(*frame.DecodeError).CloseCode() */ }
//	switch f := f.(type) { case *frame.Request: ...; case *frame.Data: ... }
package frame

import "encoding/binary"

// MaxFrameSize is the fixed v1 limit on a whole frame, header included (§3.1).
const MaxFrameSize = 1048576

// HeaderSize is the length of the frame header.
const HeaderSize = 6

// FlagEndStream ends the sender's direction of the stream (DATA, REQUEST, RESPONSE).
const FlagEndStream = 0x01

// FlagUpgrade is REQUEST's flag of the extension "upgrade": the client asked to switch
// protocols; a RESPONSE 101 turns the stream into a byte pipe (PROTOCOL.md §4.5).
const FlagUpgrade = 0x02

// Frame type bytes (§3.1).
const (
	TypeData     byte = 0x00
	TypeRequest  byte = 0x01
	TypeResponse byte = 0x02
	TypeReset    byte = 0x03
	// TypeTrailers is extension "trailers" (§3.10).
	TypeTrailers byte = 0x04
	// TypeInformational is extension "informational" (§3.11).
	TypeInformational byte = 0x05
	TypeWindow        byte = 0x08
	TypeHello         byte = 0x10
	TypeWelcome       byte = 0x11
	TypeDrain         byte = 0x12
	TypeRoutes        byte = 0x13
	TypeError         byte = 0x14
)

// Frame is one decoded frame: *Data, *Request, *Response, *Reset, *Trailers,
// *Informational, *Window, *Hello, *Welcome, *Drain, *Routes or *ErrorMessage.
type Frame interface {
	// Type is the frame's type byte.
	Type() byte
	// Encode returns the whole WebSocket message, header included.
	Encode() []byte
}

// TypeName is the spec's name of a frame type ("DATA", "HELLO", ...), or "" when reserved.
func TypeName(t byte) string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeRequest:
		return "REQUEST"
	case TypeResponse:
		return "RESPONSE"
	case TypeReset:
		return "RESET"
	case TypeTrailers:
		return "TRAILERS"
	case TypeInformational:
		return "INFORMATIONAL"
	case TypeWindow:
		return "WINDOW"
	case TypeHello:
		return "HELLO"
	case TypeWelcome:
		return "WELCOME"
	case TypeDrain:
		return "DRAIN"
	case TypeRoutes:
		return "ROUTES"
	case TypeError:
		return "ERROR"
	}
	return ""
}

func allowedFlags(t byte) byte {
	switch t {
	case TypeData, TypeResponse:
		return FlagEndStream
	case TypeRequest:
		return FlagEndStream | FlagUpgrade
	}
	return 0
}

func isControl(t byte) bool { return t >= TypeHello && t <= TypeError }

// Decode decodes one WebSocket binary message as a frame. maxFrameSize is the limit of
// §3.1 (MaxFrameSize in v1). The returned frame does not alias msg.
func Decode(msg []byte, maxFrameSize int) (Frame, error) {
	if len(msg) > maxFrameSize {
		return nil, &DecodeError{Kind: FrameTooLarge}
	}
	if len(msg) < HeaderSize {
		return nil, &DecodeError{Kind: TruncatedHeader}
	}
	t, flags, sid := msg[0], msg[1], binary.BigEndian.Uint32(msg[2:6])
	if TypeName(t) == "" {
		return nil, &DecodeError{Kind: UnknownType, Type: t, StreamID: sid}
	}
	if flags&^allowedFlags(t) != 0 {
		return nil, &DecodeError{Kind: InvalidFlags, Type: t, StreamID: sid}
	}
	if isControl(t) {
		if sid != 0 {
			return nil, &DecodeError{Kind: StreamIDNonzero, Type: t, StreamID: sid}
		}
	} else if sid == 0 {
		return nil, &DecodeError{Kind: StreamIDZero, Type: t}
	}
	end := flags&FlagEndStream != 0
	p := msg[HeaderSize:]
	var f Frame
	var kind Kind
	switch t {
	case TypeData:
		f = &Data{StreamID: sid, EndStream: end, Data: append([]byte{}, p...)}
	case TypeRequest:
		f, kind = decodeRequest(sid, end, flags&FlagUpgrade != 0, p)
	case TypeResponse:
		f, kind = decodeResponse(sid, end, p)
	case TypeReset:
		f, kind = decodeReset(sid, p)
	case TypeTrailers:
		f, kind = decodeTrailers(sid, p)
	case TypeInformational:
		f, kind = decodeInformational(sid, p)
	case TypeWindow:
		f, kind = decodeWindow(sid, p)
	default:
		var detail string
		f, detail = decodeControl(t, p)
		if f == nil {
			return nil, &DecodeError{Kind: InvalidControlPayload, Type: t, HeaderOK: true, Detail: detail}
		}
	}
	if kind != "" {
		return nil, &DecodeError{Kind: kind, Type: t, StreamID: sid, HeaderOK: true}
	}
	return f, nil
}

func header(t byte, end bool, sid uint32, payloadCap int) []byte {
	b := make([]byte, HeaderSize, HeaderSize+payloadCap)
	b[0] = t
	if end {
		b[1] = FlagEndStream
	}
	binary.BigEndian.PutUint32(b[2:], sid)
	return b
}
