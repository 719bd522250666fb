package vyx

// One registered connection, from WELCOME until it ends (core/src/session/connection.rs):
// the reader applies the stream rules of §4 and the windows of §5 to every frame, the main
// loop counts the heartbeat in ticks (§7) and runs the worker's drain.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// connEnd is how a connection ended.
type connEnd struct {
	kind   endKind
	code   int // the close code received (Closed) or sent (Violation); -1 without one
	reason string
}

type endKind int

const (
	endClosed    endKind = iota // the gateway closed
	endLost                     // the socket failed or ended without a close
	endHeartbeat                // the gateway stayed silent: we closed 4009
	endViolation                // the gateway broke the protocol: we closed with code
	endDrained                  // we drained and the connection closed
)

func (e connEnd) String() string {
	switch e.kind {
	case endClosed:
		if e.code < 0 {
			return "gateway closed the connection"
		}
		return fmt.Sprintf("gateway closed the connection: %s %s", frame.CloseCode(e.code), e.reason)
	case endLost:
		return "connection lost: " + e.reason
	case endHeartbeat:
		return "gateway silent past the heartbeat deadline"
	case endViolation:
		return fmt.Sprintf("gateway broke the protocol (%s): %s", frame.CloseCode(e.code), e.reason)
	}
	return "drained"
}

// connection is one WebSocket after WELCOME.
type connection struct {
	ws      *websocket.Conn
	raw     *corkConn // the TCP connection under ws
	out     *writer
	log     *slog.Logger
	welcome *frame.Welcome
	heard   *atomic.Bool
	routes  map[uint16]bool
	// serve starts the handler of a new stream on a goroutine of its own; it returns at once.
	serve func(*stream, *frame.Request)
	base  context.Context

	mu      sync.Mutex
	streams map[uint32]*stream

	// Reader goroutine only.
	highest         uint32
	gatewayDraining bool
	errorMessage    string // the last ERROR's message: the close's full reason
}

// trailersOn reports whether WELCOME listed "trailers" (§3.10): TRAILERS may cross this
// connection both ways.
func (c *connection) trailersOn() bool {
	return slices.Contains(c.welcome.Features, protocol.FeatureTrailers)
}

// informationalOn reports whether WELCOME listed "informational" (§3.11): the host may send
// 1xx heads.
func (c *connection) informationalOn() bool {
	return slices.Contains(c.welcome.Features, protocol.FeatureInformational)
}

// remove takes stream id out of the table (holding c.mu).
func (c *connection) remove(id uint32) {
	delete(c.streams, id)
}

// drainOrder asks a connection to drain: DRAIN with deadline as deadline_ms.
type drainOrder struct{ deadline time.Duration }

// run serves the connection until it ends. drain delivers the worker's drain order; the
// callback draining reports that DRAIN was sent.
func (c *connection) run(drain <-chan drainOrder, draining func()) connEnd {
	c.out = newWriter(c.ws, c.raw)
	c.streams = map[uint32]*stream{}
	readEnd := make(chan connEnd, 1)
	go func() { readEnd <- c.readLoop() }()

	hb := protocol.Heartbeat{}
	interval := time.Duration(c.welcome.HeartbeatMS) * time.Millisecond
	// A time.Ticker drops the ticks a stalled process missed: a stall is one interval (§7).
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	pingCtx, stopPings := context.WithCancel(context.Background())
	defer stopPings()
	var drainTimer <-chan time.Time
	drained := false

	var end connEnd
loop:
	for {
		select {
		case end = <-readEnd:
			// 1005: a close frame without a code.
			if drained && end.kind == endClosed && (end.code == 1000 || end.code == 1005) {
				end = connEnd{kind: endDrained}
			}
			break loop
		case <-ticker.C:
			if c.heard.Swap(false) {
				hb.Received()
			}
			if hb.Tick() {
				c.out.close(frame.CloseHeartbeatTimeout, "no frame or pong from the gateway")
				end = connEnd{kind: endHeartbeat, code: int(frame.CloseHeartbeatTimeout)}
				break loop
			}
			go func() {
				ctx, cancel := context.WithTimeout(pingCtx, 3*interval)
				defer cancel()
				_ = c.ws.Ping(ctx)
			}()
		case order := <-drain:
			drain, drained = nil, true
			draining()
			c.log.Info("vyx: draining: no new requests", "deadline_ms", order.deadline.Milliseconds())
			c.out.control((&frame.Drain{Reason: "worker stopping", DeadlineMS: uint64(order.deadline.Milliseconds())}).Encode())
			drainTimer = time.After(order.deadline)
		case <-drainTimer:
			c.mu.Lock()
			open := len(c.streams)
			c.mu.Unlock()
			c.log.Warn("vyx: drain deadline passed with streams still open", "open", open)
			c.out.close(frame.CloseDrainTimeout, fmt.Sprintf("%d streams still open at the drain deadline", open))
			end = connEnd{kind: endDrained}
			break loop
		}
	}

	// Every open stream fails: handlers see the cancellation; the gateway answers 502.
	c.mu.Lock()
	for id, s := range c.streams {
		delete(c.streams, id)
		s.fail(errConnectionLost)
	}
	c.mu.Unlock()
	// After the gateway's close the library has answered it; after ours this waits (at
	// most 5 s) for the answer. Bounded either way.
	c.out.close(frame.CloseNormal, "")
	wait := 6 * time.Second
	if end.kind == endHeartbeat {
		// A silent peer will not answer the close: the 4009 is best effort (§7), and the
		// writer's wait for an answer ends by itself.
		wait = 100 * time.Millisecond
	}
	select {
	case <-c.out.done:
	case <-time.After(wait):
	}
	_ = c.raw.Close()
	return end
}

// readFrame reads one message through the frame limit: an oversized message is never
// buffered past MaxFrameSize+1 bytes.
func readFrame(ws *websocket.Conn, buf *bytes.Buffer) (websocket.MessageType, []byte, bool, error) {
	typ, r, err := ws.Reader(context.Background())
	if err != nil {
		return 0, nil, false, err
	}
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r, protocol.MaxFrameSize+1)); err != nil {
		return 0, nil, false, err
	}
	return typ, buf.Bytes(), buf.Len() > protocol.MaxFrameSize, nil
}

func (c *connection) readLoop() connEnd {
	var buf bytes.Buffer
	for {
		typ, msg, tooLarge, err := readFrame(c.ws, &buf)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				reason := ce.Reason
				if c.errorMessage != "" {
					reason = c.errorMessage // the close reason may be cut; ERROR is whole
				}
				return connEnd{kind: endClosed, code: int(ce.Code), reason: reason}
			}
			return connEnd{kind: endLost, code: -1, reason: err.Error()}
		}
		c.heard.Store(true)
		var code frame.CloseCode
		var why string
		switch {
		case tooLarge:
			code, why = frame.CloseFrameTooLarge, fmt.Sprintf("message longer than %d bytes", protocol.MaxFrameSize)
		case typ != websocket.MessageBinary:
			code, why = frame.CloseProtocolViolation, "text message; the protocol uses binary messages only"
		default:
			code, why = c.onFrame(msg)
		}
		if code != 0 {
			c.out.close(code, why)
			return connEnd{kind: endViolation, code: int(code), reason: why}
		}
	}
}

// onFrame applies one frame; a non-zero code is the connection error to close with.
func (c *connection) onFrame(msg []byte) (frame.CloseCode, string) {
	f, err := frame.Decode(msg, protocol.MaxFrameSize)
	if err != nil {
		var de *frame.DecodeError
		errors.As(err, &de)
		if de.IsStreamError() && de.Type == frame.TypeRequest {
			// A REQUEST head that does not decode (a bad target, method, header, param name,
			// a truncated or overlong head) fails its stream only (§8): the id is opened as
			// any REQUEST's, then RESET protocol_error; the connection serves on.
			if code, why := c.openID(de.StreamID); code != 0 {
				return code, why
			}
			c.log.Warn("vyx: invalid REQUEST head; stream reset", "stream", de.StreamID, "error", err.Error())
			why := fmt.Sprintf("invalid REQUEST head: %s", err.Error())
			c.out.control((&frame.Reset{StreamID: de.StreamID, Code: frame.ResetProtocolError, Reason: why}).Encode())
			return 0, ""
		}
		if de.IsStreamError() && de.Type == frame.TypeTrailers && c.trailersOn() {
			return c.badTrailers(de.StreamID, "invalid TRAILERS: "+err.Error())
		}
		return de.CloseCode(), err.Error()
	}
	pv := frame.CloseProtocolViolation
	switch f := f.(type) {
	case *frame.Request:
		if code, why := c.openID(f.StreamID); code != 0 {
			return code, why
		}
		if f.Upgrade && !slices.Contains(c.welcome.Features, protocol.FeatureUpgrade) {
			// Only a connection whose WELCOME listed "upgrade" carries the flag
			// (PROTOCOL.md §4.5); elsewhere it is the violation it was in v1.
			return pv, fmt.Sprintf("REQUEST (stream %d) with flag UPGRADE, which this connection did not negotiate", f.StreamID)
		}
		c.open(f)
	case *frame.Data:
		if f.StreamID > c.highest {
			return pv, fmt.Sprintf("DATA for stream %d, which was never opened", f.StreamID)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.streams[f.StreamID]
		if s == nil {
			return 0, "" // closed already: a normal race
		}
		if s.bodyEnded {
			c.out.reset(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetProtocolError, Reason: "DATA after END_STREAM"}).Encode())
			c.remove(s.id)
			s.fail(&StreamError{Code: frame.ResetProtocolError, Reason: "gateway sent DATA after END_STREAM"})
			return 0, ""
		}
		if !s.recv.Data(len(f.Data), f.EndStream) {
			return frame.CloseFlowControl, fmt.Sprintf("DATA on stream %d exceeds its window", f.StreamID)
		}
		if len(f.Data) > 0 {
			s.body = append(s.body, f.Data)
		}
		if f.EndStream {
			s.bodyEnded = true
			if s.respEnded {
				c.remove(s.id)
			}
		}
		signal(s.readWake)
	case *frame.Trailers:
		if !c.trailersOn() {
			return pv, "TRAILERS on a connection that did not negotiate trailers"
		}
		if f.PayloadLen() > protocol.MaxTrailersSize {
			return c.badTrailers(f.StreamID, "TRAILERS larger than max_trailers_size")
		}
		if f.StreamID > c.highest {
			return pv, fmt.Sprintf("TRAILERS for stream %d, which was never opened", f.StreamID)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.streams[f.StreamID]
		if s == nil {
			return 0, ""
		}
		if s.bodyEnded {
			c.out.reset(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetProtocolError, Reason: "TRAILERS after END_STREAM"}).Encode())
			c.remove(s.id)
			s.fail(&StreamError{Code: frame.ResetProtocolError, Reason: "gateway sent TRAILERS after END_STREAM"})
			return 0, ""
		}
		// TRAILERS ends the request body as END_STREAM does (§3.10).
		s.trailers, s.bodyEnded = f.Headers, true
		if s.respEnded {
			c.remove(s.id)
		}
		signal(s.readWake)
	case *frame.Window:
		if f.StreamID > c.highest {
			return pv, fmt.Sprintf("WINDOW for stream %d, which was never opened", f.StreamID)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if s := c.streams[f.StreamID]; s != nil && !s.respEnded {
			if !s.send.Grant(f.Increment) {
				return frame.CloseFlowControl, fmt.Sprintf("WINDOW takes stream %d past 2^31-1", f.StreamID)
			}
			signal(s.writeWake)
		}
	case *frame.Reset:
		if f.StreamID > c.highest {
			return pv, fmt.Sprintf("RESET for stream %d, which was never opened", f.StreamID)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if s := c.streams[f.StreamID]; s != nil {
			c.remove(s.id)
			s.fail(&StreamError{Code: f.Code, Reason: f.Reason})
		}
	case *frame.Drain:
		c.gatewayDraining = true
		c.log.Info("vyx: the gateway is draining this connection", "reason", f.Reason, "deadline_ms", f.DeadlineMS)
	case *frame.ErrorMessage:
		c.errorMessage = f.Message
		c.log.Warn("vyx: the gateway reported an error", "code", int(f.Code), "message", f.Message)
	default:
		return pv, frame.TypeName(f.Type()) + " frame is not sent by a gateway"
	}
	return 0, ""
}

// badTrailers fails the stream whose TRAILERS broke §3.10 (RESET protocol_error); the
// connection serves on.
func (c *connection) badTrailers(id uint32, why string) (frame.CloseCode, string) {
	if id > c.highest {
		return frame.CloseProtocolViolation, fmt.Sprintf("TRAILERS for stream %d, which was never opened", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.streams[id]; s != nil {
		c.log.Warn("vyx: invalid TRAILERS; stream reset", "stream", id, "why", why)
		c.out.reset(id, (&frame.Reset{StreamID: id, Code: frame.ResetProtocolError, Reason: why}).Encode())
		c.remove(id)
		s.fail(&StreamError{Code: frame.ResetProtocolError, Reason: why})
	}
	return 0, ""
}

// openID counts a REQUEST's id as opened; an id that cannot open a stream is the
// connection's error, whether or not its head decodes (§4.1, §7).
func (c *connection) openID(id uint32) (frame.CloseCode, string) {
	pv := frame.CloseProtocolViolation
	if c.gatewayDraining {
		return pv, fmt.Sprintf("REQUEST (stream %d) after the gateway's DRAIN", id)
	}
	if id <= c.highest {
		return pv, fmt.Sprintf("REQUEST reuses stream id %d (highest so far %d)", id, c.highest)
	}
	c.highest = id
	return 0, ""
}

// open starts a stream for a REQUEST: refused at the concurrency cap (§6), 404 for a
// route id this worker does not serve, else handed to its handler.
func (c *connection) open(r *frame.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.streams) >= int(c.welcome.MaxConcurrency) {
		c.out.control((&frame.Reset{StreamID: r.StreamID, Code: frame.ResetRefused, Reason: "worker at its concurrency cap"}).Encode())
		return
	}
	ctx, cancel := context.WithCancelCause(c.base)
	s := &stream{
		id: r.StreamID, c: c, headOnly: r.Method == "HEAD", upgrade: r.Upgrade, ctx: ctx, cancel: cancel,
		readWake: make(chan struct{}, 1), writeWake: make(chan struct{}, 1),
		bodyEnded: r.EndStream,
		recv:      *protocol.NewRecvWindow(uint32(c.welcome.InitialWindow)),
		send:      *protocol.NewSendWindow(uint32(c.welcome.InitialWindow)),
	}
	s.recv.Data(0, r.EndStream) // a REQUEST with END_STREAM has no body to grant credit for
	if !r.EndStream {
		for _, h := range r.Headers {
			if h.Name == "expect" && bytes.EqualFold(h.Value, []byte("100-continue")) {
				s.expectContinue = true
			}
		}
	}
	c.streams[s.id] = s
	if !c.routes[r.RouteID] {
		c.log.Warn("vyx: request for a route id this worker never declared; answering 404", "stream", s.id, "route_id", r.RouteID)
		fields, _ := encodeHead(404, notFoundHeader, notFoundBody, s.headOnly, false)
		c.out.control((&frame.Response{StreamID: s.id, EndStream: s.headOnly, Status: 404, Headers: fields}).Encode())
		if !s.headOnly {
			s.send.Reserve(len(notFoundBody))
			s.queueData(notFoundBody, true)
		}
		s.headSent = true
		s.endResponse()
		if !s.bodyEnded {
			c.out.stream(s.id, (&frame.Reset{StreamID: s.id, Code: frame.ResetNoError}).Encode())
			c.remove(s.id)
		}
		cancel(context.Canceled)
		return
	}
	c.serve(s, r)
}

var (
	notFoundHeader = map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}
	notFoundBody   = []byte("not found")
)
