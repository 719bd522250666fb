package vyx

// One stream of a connection, as its handler sees it (core/src/session/stream.rs): the
// request body in, with the receive window granted back as the handler reads, and the
// response out, within the send window, with the host rules of spec/HOSTS.md §6 applied to
// the head.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// StreamError is why a stream can no longer be answered: the gateway reset it
// (errors.Is(err, ErrStreamReset)), or the connection was lost (ErrConnectionLost). It is
// the cause of the request context's cancellation (context.Cause(r.Context())) and the
// error of every later Read and Write.
//
//	if se := (*vyx.StreamError)(nil); errors.As(context.Cause(r.Context()), &se) && !se.Lost { log.Print(se.Code) }
type StreamError struct {
	// Code is the gateway's RESET code; Lost is true (and Code meaningless) when the
	// connection ended with the stream open.
	Code   ResetCode
	Reason string
	Lost   bool
}

// ResetCode is a RESET code of PROTOCOL.md §8.4 (0 no_error ... 6 flow_control); it
// prints as "1 cancel".
type ResetCode = frame.ResetCode

func (e *StreamError) Error() string {
	if e.Lost {
		return "vyx: connection to the gateway lost"
	}
	if e.Reason != "" {
		return fmt.Sprintf("vyx: stream reset by the gateway: %s: %s", e.Code.Name(), e.Reason)
	}
	return "vyx: stream reset by the gateway: " + e.Code.Name()
}

// The sentinels a *StreamError matches with errors.Is.
var (
	ErrStreamReset    = errors.New("vyx: stream reset by the gateway")
	ErrConnectionLost = errors.New("vyx: connection to the gateway lost")
)

// Is matches ErrConnectionLost when the connection was lost, else ErrStreamReset.
func (e *StreamError) Is(target error) bool {
	if e.Lost {
		return target == ErrConnectionLost
	}
	return target == ErrStreamReset
}

// errConnectionLost fails the streams still open when a connection ends.
var errConnectionLost = &StreamError{Lost: true}

type stream struct {
	id       uint32
	c        *connection
	headOnly bool // a HEAD request: the head is sent, never a body (§2.5.4)
	// upgrade: REQUEST carried flag UPGRADE; a 101 makes the stream a byte pipe (§4.5).
	upgrade bool
	// expectContinue: the gateway holds the body until the first read asks for it (§5.1).
	expectContinue bool
	ctx            context.Context
	cancel         context.CancelCauseFunc
	readWake       chan struct{}
	writeWake      chan struct{}

	// Guarded by c.mu.
	body      [][]byte      // received, not yet read
	bodyEnded bool          // END_STREAM (or TRAILERS) received
	trailers  []frame.Field // the request's TRAILERS (§3.10)
	recv      protocol.RecvWindow
	send      protocol.SendWindow
	asked     bool // the expect: 100-continue body was asked for
	headSent  bool
	respEnded bool
	err       error // reset or lost: every call fails with it
	// informational counts the INFORMATIONAL heads sent (§3.11).
	informational int
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fail ends the stream with err (the caller removed it from the table, holding c.mu).
func (s *stream) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.cancel(err)
	signal(s.readWake)
	signal(s.writeWake)
}

// read is the request body's Read: it hands out received bytes and grants the window
// back (§5); it blocks until bytes arrive, the body ends or the stream fails.
func (s *stream) read(p []byte) (int, error) { return s.readUntil(p, nil) }

// readUntil is read that gives up with os.ErrDeadlineExceeded when deadline fires (an
// upgraded connection's read deadline; nil: none).
func (s *stream) readUntil(p []byte, deadline <-chan time.Time) (int, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if s.err != nil {
			return 0, s.err
		}
		if len(s.body) > 0 {
			n := copy(p, s.body[0])
			if n == len(s.body[0]) {
				s.body[0] = nil
				s.body = s.body[1:]
			} else {
				s.body[0] = s.body[0][n:]
			}
			if inc := s.recv.Consume(uint32(n)); inc > 0 {
				c.out.control((&frame.Window{StreamID: s.id, Increment: inc}).Encode())
			}
			return n, nil
		}
		if s.bodyEnded {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if s.expectContinue && !s.asked {
			// A one-byte WINDOW asks the gateway for the held body (§5.1).
			s.asked = true
			s.recv.Grant(1)
			c.out.control((&frame.Window{StreamID: s.id, Increment: 1}).Encode())
		}
		c.mu.Unlock()
		select {
		case <-s.readWake:
		case <-s.ctx.Done():
		case <-deadline:
			c.mu.Lock()
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if s.err == nil && s.ctx.Err() != nil {
			s.err = context.Cause(s.ctx)
		}
	}
}

// sendHead sends RESPONSE. whole is the complete body when the response is sent in one
// piece (content-length is then added; when it fits one DATA frame and the window, it is
// sent here too); nil for a streamed body. It returns whether body bytes may follow. An invalid head is answered 500 and reported as *InvalidHeadError.
func (s *stream) sendHead(status int, h http.Header, whole []byte, end bool) (bool, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	if s.headSent {
		return false, errors.New("vyx: response head sent twice")
	}
	noBody := s.headOnly || status == 204 || status == 304
	end = end || noBody
	fields, err := encodeHead(status, h, whole, noBody, s.upgrade)
	if err != nil {
		s.internalError()
		return false, err
	}
	if c.trailersOn() && !noBody {
		// On a connection with trailers, "Trailer" announces them (§3.10).
		for _, v := range h["Trailer"] {
			if frame.IsHeaderValue([]byte(v)) {
				fields = append(fields, frame.Field{Name: "trailer", Value: []byte(v)})
			}
		}
	}
	s.headSent = true
	head := (&frame.Response{StreamID: s.id, EndStream: end, Status: uint16(status), Headers: fields}).Encode()
	if !end && len(whole) > 0 && len(whole) <= frame.MaxDataPayload && s.send.Available() >= int64(len(whole)) {
		// A whole body that fits one DATA frame and the window is queued with its head, so
		// that the writer takes both in one turn: one write to the socket, not a RESPONSE
		// alone when the writer woke between the two.
		s.send.Reserve(len(whole))
		c.out.headAndData(head, s.id, (&frame.Data{StreamID: s.id, EndStream: true, Data: whole}).Encode())
		s.endResponse()
		return false, nil
	}
	c.out.control(head)
	if end {
		s.endResponse()
	}
	return !end, nil
}

// internalError answers 500 "internal error" (a handler that failed before its head, or
// whose head cannot be encoded), holding c.mu.
func (s *stream) internalError() {
	body := []byte("internal error")
	if s.headOnly || s.send.Available() < int64(len(body)) {
		body = body[:0]
	}
	fields, _ := encodeHead(500, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body, s.headOnly, false)
	s.headSent = true
	end := len(body) == 0
	s.c.out.control((&frame.Response{StreamID: s.id, EndStream: end, Status: 500, Headers: fields}).Encode())
	if !end {
		s.send.Reserve(len(body))
		s.queueData(body, true)
	}
	s.endResponse()
}

// InvalidHeadError is a response head the host cannot encode (HOSTS.md §6): the SDK
// answered 500 instead and logs this.
type InvalidHeadError struct{ Why string }

func (e *InvalidHeadError) Error() string { return "vyx: invalid response head: " + e.Why }

// queueData queues one DATA frame (credit already reserved), holding c.mu.
func (s *stream) queueData(p []byte, end bool) {
	s.c.out.stream(s.id, (&frame.Data{StreamID: s.id, EndStream: end, Data: p}).Encode())
}

// write sends body bytes within the send window, blocking for WINDOW when it is spent
// (§5), splitting at the frame limit. end sends END_STREAM with the last bytes.
func (s *stream) write(p []byte, end bool) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if s.err != nil {
			return s.err
		}
		if s.respEnded {
			return errors.New("vyx: write after the response ended")
		}
		if s.headOnly {
			if end {
				s.endResponse()
			}
			return nil
		}
		if len(p) == 0 {
			if end {
				s.queueData(nil, true)
				s.endResponse()
			}
			return nil
		}
		n := s.send.Reserve(min(len(p), frame.MaxDataPayload))
		if n == 0 {
			c.mu.Unlock()
			select {
			case <-s.writeWake:
			case <-s.ctx.Done():
			}
			c.mu.Lock()
			if s.err == nil && s.ctx.Err() != nil {
				s.err = context.Cause(s.ctx)
			}
			continue
		}
		last := end && n == len(p)
		s.queueData(p[:n], last) // Encode copies: p is the caller's to reuse at once
		p = p[n:]
		if last {
			s.endResponse()
			return nil
		}
	}
}

// sendTrailers ends the response with TRAILERS (§3.10) instead of END_STREAM, behind
// its DATA. Fields are checked as a head's (HOSTS.md §6); trailers that cannot be sent
// reset the stream handler_error, as a body that cannot be finished.
func (s *stream) sendTrailers(fields []frame.Field) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.respEnded {
		return errors.New("vyx: trailers after the response ended")
	}
	t := &frame.Trailers{StreamID: s.id, Headers: fields}
	if s.headOnly {
		s.endResponse()
		return nil
	}
	if t.PayloadLen() > protocol.MaxTrailersSize {
		why := fmt.Sprintf("trailers of %d bytes exceed max_trailers_size (%d)", t.PayloadLen(), protocol.MaxTrailersSize)
		c.out.stream(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetHandlerError, Reason: why}).Encode())
		c.remove(s.id)
		s.fail(&StreamError{Code: frame.ResetHandlerError, Reason: why})
		return &InvalidHeadError{why}
	}
	c.out.stream(s.id, t.Encode())
	s.endResponse()
	return nil
}

// sendInformational sends an interim (1xx) response before the head (INFORMATIONAL,
// §3.11), as core's Stream::send_informational: false when it is dropped (the connection
// did not negotiate "informational", MaxInformational were sent, the stream failed); an
// error after the head or for a bad status or field, and the stream goes on.
func (s *stream) sendInformational(status int, h http.Header) (bool, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.headSent {
		return false, errors.New("vyx: an interim response after the response head")
	}
	fields, err := encodeInformational(status, h)
	if err != nil {
		return false, err
	}
	if !c.informationalOn() || s.informational >= protocol.MaxInformational || s.err != nil {
		return false, nil
	}
	s.informational++
	c.out.control((&frame.Informational{StreamID: s.id, Status: uint16(status), Headers: fields}).Encode())
	return true, nil
}

// endResponse records the response's END_STREAM; a stream whose request body ended too is
// closed (§4.2) and leaves the table. Holding c.mu.
func (s *stream) endResponse() {
	s.respEnded = true
	if s.bodyEnded {
		s.c.remove(s.id)
	}
}

// finish runs when the handler returned: a request body still open is refused with
// RESET no_error after the complete response (§4.3), and the stream leaves the table.
func (s *stream) finish() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.err == nil && s.respEnded && !s.bodyEnded {
		c.out.stream(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetNoError}).Encode())
	}
	c.remove(s.id)
	s.cancel(context.Canceled)
}

// abort resets the stream handler_error (a handler that failed after the head), after the
// DATA it wrote: the client gets that body before the abort (§5).
func (s *stream) abort(reason string) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.err != nil {
		return
	}
	c.out.stream(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetHandlerError, Reason: reason}).Encode())
	c.remove(s.id)
	s.fail(&StreamError{Code: frame.ResetHandlerError, Reason: reason})
}

// hopByHop are the headers a worker never sends (§3.5), besides proxy-* and those the
// connection header lists.
var hopByHop = map[string]bool{"connection": true, "keep-alive": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true}

// lowerNames are the lower-case forms of the response headers handlers set most, which
// strings.ToLower would allocate for every response.
var lowerNames = map[string]string{
	"Content-Type": "content-type", "Content-Length": "content-length",
	"Cache-Control": "cache-control", "Set-Cookie": "set-cookie", "Location": "location",
	"Etag": "etag", "Last-Modified": "last-modified", "Date": "date", "Vary": "vary",
	"Content-Encoding": "content-encoding", "X-Content-Type-Options": "x-content-type-options",
	"Access-Control-Allow-Origin": "access-control-allow-origin",
}

// lowerName is strings.ToLower(name), without allocating for the common names.
func lowerName(name string) string {
	if l, ok := lowerNames[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

// encodeHead applies the host rules to a head (HOSTS.md §6): names lower-cased, hop-by-hop
// headers dropped, content-length added for a whole body unless given or the status has
// none; it fails when the result could not be sent (status, name, value, size). A 101 is
// allowed on an upgrade stream only, and keeps its upgrade header (HOSTS.md §7a).
func encodeHead(status int, h http.Header, whole []byte, noBody, upgrade bool) ([]frame.Field, error) {
	switching := status == http.StatusSwitchingProtocols && upgrade
	if (status < 200 || status > 599) && !switching {
		return nil, &InvalidHeadError{fmt.Sprintf("status %d is outside 200..=599 (101 answers an upgrade request only)", status)}
	}
	return headFields(status, h, whole, noBody, switching)
}

// encodeInformational checks an interim (1xx) response (§3.11) and shapes its fields as a
// head's (core's encode_informational).
func encodeInformational(status int, h http.Header) ([]frame.Field, error) {
	if status < 0 || status > 65535 || !frame.IsInformationalStatus(uint16(status)) {
		return nil, &InvalidHeadError{fmt.Sprintf("status %d is not an interim response (100..=199 except 101)", status)}
	}
	return headFields(status, h, nil, true, false)
}

// headFields are the fields of a head with status: names lower-cased, hop-by-hop names
// dropped, content-length added for a whole body.
func headFields(status int, h http.Header, whole []byte, noBody, switching bool) ([]frame.Field, error) {
	listed := map[string]bool{}
	for _, v := range h["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				listed[strings.ToLower(t)] = true
			}
		}
	}
	var stack [16]string
	names, values := stack[:0], 0
	for name, vs := range h {
		names = append(names, name)
		for _, v := range vs {
			values += len(v)
		}
	}
	slices.Sort(names) // a stable head; values of one name keep their order
	fields := make([]frame.Field, 0, len(h)+1)
	// Every value is a slice of one buffer (room for a content-length too), which never
	// grows: one allocation for the head's values instead of one each.
	buf := make([]byte, 0, values+20)
	size, hasLength := frame.HeaderSize+4, false
	for _, name := range names {
		values := h[name]
		lower := lowerName(name)
		keep := switching && lower == "upgrade"
		if !keep && (hopByHop[lower] || listed[lower] || strings.HasPrefix(lower, "proxy-") ||
			strings.HasPrefix(lower, "trailer:")) { // http.TrailerPrefix: sent as trailers
			continue
		}
		if !frame.IsHeaderName(lower) || len(lower) > 65535 {
			return nil, &InvalidHeadError{fmt.Sprintf("header name %q is not a token", name)}
		}
		if lower == "content-length" {
			if status == 204 || status == 304 {
				continue
			}
			hasLength = true
		}
		for _, v := range values {
			if !frame.IsHeaderValue([]byte(v)) || len(v) > 65535 {
				return nil, &InvalidHeadError{fmt.Sprintf("value of header %q holds a forbidden byte or is longer than 65535 bytes", name)}
			}
			at := len(buf)
			buf = append(buf, v...)
			fields = append(fields, frame.Field{Name: lower, Value: buf[at:len(buf):len(buf)]})
			size += 4 + len(lower) + len(v)
		}
	}
	if whole != nil && !hasLength && status != 204 && status != 304 && !switching && !(noBody && len(whole) == 0) {
		at := len(buf)
		buf = strconv.AppendInt(buf, int64(len(whole)), 10)
		fields = append(fields, frame.Field{Name: "content-length", Value: buf[at:len(buf):len(buf)]})
		size += 4 + len("content-length") + len(buf) - at
	}
	if len(fields) > 65535 {
		return nil, &InvalidHeadError{fmt.Sprintf("%d headers; a response carries at most 65535", len(fields))}
	}
	if size > protocol.MaxFrameSize {
		return nil, &InvalidHeadError{fmt.Sprintf("response head of %d bytes exceeds the %d-byte frame limit", size, protocol.MaxFrameSize)}
	}
	return fields, nil
}
