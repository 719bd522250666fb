package vyx

// Dialing the gateway: the upgrade request with credentials and subprotocol, then
// HELLO → WELCOME (core/src/session/connect.rs).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/protocol"
)

// registerPath is the gateway's default registration endpoint (§2.1).
const registerPath = "/_vyx/register"

// registrationURL is the URL a worker dials (§2.1): a URL whose path is empty or "/" gets
// /_vyx/register (a query kept after it); a URL with any other path is dialled as given.
//
//	registrationURL("ws://127.0.0.1:9000")           // "ws://127.0.0.1:9000/_vyx/register"
//	registrationURL("ws://gw.example:9000?region=eu") // "ws://gw.example:9000/_vyx/register?region=eu"
func registrationURL(connect string) string {
	afterScheme := 0
	if i := strings.Index(connect, "://"); i >= 0 {
		afterScheme = i + 3
	}
	authorityEnd := len(connect)
	if i := strings.IndexAny(connect[afterScheme:], "/?#"); i >= 0 {
		authorityEnd = afterScheme + i
	}
	head, tail := connect[:authorityEnd], connect[authorityEnd:]
	pathEnd := len(tail)
	if i := strings.IndexAny(tail, "?#"); i >= 0 {
		pathEnd = i
	}
	if p := tail[:pathEnd]; p == "" || p == "/" {
		return head + registerPath + tail[pathEnd:]
	}
	return connect
}

// ConnectKind classifies a failed connection attempt (§9).
type ConnectKind int

// Connection failure kinds: all but Transient are permanent (the worker stops).
const (
	// Transient may go away by itself: refused connection, timeout, 5xx, 426, a drop.
	Transient ConnectKind = iota
	// Unauthorized is HTTP 401 or 403 on the upgrade.
	Unauthorized
	// NoEndpoint is HTTP 404 on the upgrade: nothing at that URL registers workers.
	NoEndpoint
	// Rejected is HTTP 400, or a 101 that does not select vyx.1.
	Rejected
	// Refused is a protocol close during the handshake (permanent for 4000–4004).
	Refused
)

// String names the kind as the logs do.
//
//	fmt.Sprint(vyx.Unauthorized) // "unauthorized"
func (k ConnectKind) String() string {
	if k < 0 || int(k) >= len(connectKindNames) {
		return fmt.Sprintf("ConnectKind(%d)", int(k))
	}
	return connectKindNames[k]
}

var connectKindNames = [...]string{"transient", "unauthorized", "no_endpoint", "rejected", "refused"}

// The sentinels a *ConnectError matches with errors.Is, one per permanent kind.
//
//	if errors.Is(err, vyx.ErrUnauthorized) { /* fix VYX_TOKEN */ }
var (
	ErrUnauthorized = errors.New("vyx: the gateway refused the credentials")
	ErrNoEndpoint   = errors.New("vyx: no vyx registration endpoint at that URL")
	ErrRejected     = errors.New("vyx: the gateway rejected the registration request")
	ErrRefused      = errors.New("vyx: the gateway refused the worker")
)

// CloseCode is a WebSocket close code of PROTOCOL.md §8 (4001 bad_hello ... 4009
// heartbeat_timeout); it prints as "4001 bad_hello".
type CloseCode = frame.CloseCode

// ConnectError says why a connection attempt failed, with the gateway's reason: the HTTP
// body, or the ERROR message / close reason. errors.Is matches it with the sentinel of its
// Kind (ErrUnauthorized, ErrNoEndpoint, ErrRejected, ErrRefused), and errors.Unwrap gives
// the network or TLS error under a Transient failure.
//
//	var ce *vyx.ConnectError
//	if errors.As(err, &ce) && ce.Kind == vyx.Unauthorized { log.Fatalf("HTTP %d: %s", ce.Status, ce.Reason) }
type ConnectError struct {
	Kind   ConnectKind
	Status int       // HTTP status, for Unauthorized, NoEndpoint, Rejected, Transient
	Code   CloseCode // close code, for Refused
	URL    string
	Reason string
	// Detail is the whole message of a Transient failure.
	Detail string
	// Err is the error under a Transient failure (a *net.OpError, a TLS error, a
	// timeout), nil when the gateway answered.
	Err error
}

func (e *ConnectError) Error() string {
	switch e.Kind {
	case Unauthorized:
		return fmt.Sprintf("gateway refused the credentials: HTTP %d: %s", e.Status, e.Reason)
	case NoEndpoint:
		return fmt.Sprintf("no vyx registration endpoint at %s: HTTP 404: %s", e.URL, e.Reason)
	case Rejected:
		if e.Status != 0 {
			return fmt.Sprintf("gateway rejected the registration request: HTTP %d: %s", e.Status, e.Reason)
		}
		return "gateway rejected the registration request: " + e.Reason
	case Refused:
		return fmt.Sprintf("gateway refused the worker: %s: %s", e.Code, e.Reason)
	}
	return e.Detail
}

// Unwrap is the network or TLS error under a Transient failure (nil otherwise).
func (e *ConnectError) Unwrap() error { return e.Err }

// Is matches the sentinel of e's Kind.
func (e *ConnectError) Is(target error) bool {
	switch e.Kind {
	case Unauthorized:
		return target == ErrUnauthorized
	case NoEndpoint:
		return target == ErrNoEndpoint
	case Rejected:
		return target == ErrRejected
	case Refused:
		return target == ErrRefused
	}
	return false
}

// Permanent reports whether retrying cannot help until a configuration changes (§9).
func (e *ConnectError) Permanent() bool {
	switch e.Kind {
	case Transient:
		return false
	case Refused:
		return e.Code.IsPermanent()
	}
	return true
}

// transient is a failure that may go away by itself; cause (nil when the gateway answered)
// is what errors.Unwrap gives.
func transient(cause error, format string, a ...any) *ConnectError {
	return &ConnectError{Kind: Transient, Detail: fmt.Sprintf(format, a...), Err: cause}
}

// maxReasonChars is the longest part of a refusal's body kept (gateways answer one line).
const maxReasonChars = 300

// httpReason is the body of a refused upgrade as one line, whitespace runs folded, cut at
// maxReasonChars characters.
func httpReason(body []byte) string {
	line := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "\uFFFD")), " ")
	if r := []rune(line); len(r) > maxReasonChars {
		return string(r[:maxReasonChars]) + "…"
	}
	return line
}

// dialer holds what every attempt of one session shares.
type dialer struct {
	url string
	// addr is where TCP goes: the URL's host stays the TLS server name and Host.
	addr    netip.AddrPort
	header  http.Header
	tls     *tls.Config
	timeout time.Duration
	hello   *frame.Hello
	// heard is set by the WebSocket's ping and pong callbacks: the heartbeat's receptions.
	heard *atomic.Bool
}

// connect dials, upgrades, sends HELLO and waits for a valid WELCOME (§2.2, §2.3).
func (d *dialer) connect(ctx context.Context) (*websocket.Conn, *corkConn, *frame.Welcome, error) {
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	onPing := func(context.Context, []byte) bool { d.heard.Store(true); return true }
	onPong := func(context.Context, []byte) { d.heard.Store(true) }
	// The raw TCP connection, so that a dead peer can be dropped at once (the library's
	// own close waits up to 5 s for an answer).
	var raw *corkConn
	var nd net.Dialer
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: d.tls,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, d.addr.String())
			if err != nil {
				return nil, err
			}
			// ws://: the WebSocket runs on this socket itself; wss:// puts TLS between them.
			raw = &corkConn{Conn: c, plain: strings.HasPrefix(d.url, "ws://")}
			return raw, nil
		},
	}}
	ws, resp, err := websocket.Dial(dctx, d.url, &websocket.DialOptions{
		HTTPClient:     client,
		HTTPHeader:     d.header.Clone(),
		Subprotocols:   []string{protocol.Subprotocol},
		OnPingReceived: onPing,
		OnPongReceived: onPong,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(resp.Body)
			reason := httpReason(body)
			if reason == "" {
				reason = http.StatusText(resp.StatusCode)
			}
			switch resp.StatusCode {
			case 401, 403:
				return nil, nil, nil, &ConnectError{Kind: Unauthorized, Status: resp.StatusCode, URL: d.url, Reason: reason}
			case 404:
				return nil, nil, nil, &ConnectError{Kind: NoEndpoint, Status: 404, URL: d.url, Reason: reason}
			case 400:
				return nil, nil, nil, &ConnectError{Kind: Rejected, Status: 400, URL: d.url, Reason: reason}
			}
			return nil, nil, nil, &ConnectError{Kind: Transient, Status: resp.StatusCode, URL: d.url, Reason: reason,
				Detail: fmt.Sprintf("gateway answered HTTP %d: %s", resp.StatusCode, reason)}
		}
		if strings.Contains(err.Error(), "Sec-WebSocket-Protocol") {
			return nil, nil, nil, &ConnectError{Kind: Rejected, URL: d.url, Reason: "the 101 answer does not select " + protocol.Subprotocol}
		}
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, nil, nil, transient(err, "no answer from %s within %s", d.url, d.timeout)
		}
		return nil, nil, nil, transient(err, "cannot reach %s at %s: %v", d.url, d.addr, err)
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		_ = ws.Close(websocket.StatusProtocolError, "vyx.1 not selected")
		return nil, nil, nil, &ConnectError{Kind: Rejected, URL: d.url, Reason: "the 101 answer does not select " + protocol.Subprotocol}
	}
	// Frames are read through a limit of our own (connection.go), so that an oversized
	// message closes 4006 instead of the library's 1009.
	ws.SetReadLimit(-1)

	if err := ws.Write(context.Background(), websocket.MessageBinary, d.hello.Encode()); err != nil {
		_ = ws.CloseNow()
		return nil, nil, nil, transient(err, "sending HELLO failed: %v", err)
	}

	// No WELCOME within the handshake timeout: close 4007 (the blocked read then ends).
	var timedOut atomic.Bool
	timer := time.AfterFunc(protocol.HandshakeTimeoutMS*time.Millisecond, func() {
		timedOut.Store(true)
		go func() {
			_ = ws.Close(websocket.StatusCode(frame.CloseHandshakeTimeout), "no WELCOME within 10s")
		}()
		// The close is best effort: a gateway that sends nothing may not answer it.
		time.AfterFunc(time.Second, func() { _ = raw.Close() })
	})
	defer timer.Stop()
	// A stop from here on does not cut the handshake (bounded by its timeout): the
	// connection then drains at once, so a REQUEST already sent is still answered.

	var errorMessage *frame.ErrorMessage
	var buf bytes.Buffer
	for {
		typ, msg, tooLarge, err := readFrame(ws, &buf)
		if err != nil {
			if timedOut.Load() {
				_ = raw.Close()
				return nil, nil, nil, transient(nil, "no WELCOME within %dms", protocol.HandshakeTimeoutMS)
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				reason := ce.Reason
				if errorMessage != nil {
					reason = errorMessage.Message // the ERROR carries the whole message
				}
				return nil, nil, nil, &ConnectError{Kind: Refused, Code: frame.CloseCode(ce.Code), URL: d.url, Reason: reason}
			}
			return nil, nil, nil, transient(err, "handshake failed: %v", err)
		}
		if tooLarge {
			return nil, nil, nil, closeHandshake(ws, frame.CloseFrameTooLarge, "message longer than the frame limit")
		}
		if typ != websocket.MessageBinary {
			return nil, nil, nil, closeHandshake(ws, frame.CloseProtocolViolation, "text message during the handshake")
		}
		f, err := frame.Decode(msg, protocol.MaxFrameSize)
		if err != nil {
			var de *frame.DecodeError
			errors.As(err, &de)
			return nil, nil, nil, closeHandshake(ws, de.CloseCode(), "invalid WELCOME: "+err.Error())
		}
		switch f := f.(type) {
		case *frame.Welcome:
			if err := protocol.ValidateWelcome(f, d.hello.MaxConcurrency, d.hello.Features); err != nil {
				he := err.(*protocol.HandshakeError)
				e := closeHandshake(ws, he.Code, he.Message)
				if he.Code == frame.CloseUnsupportedVersion {
					e = &ConnectError{Kind: Refused, Code: he.Code, URL: d.url, Reason: he.Message}
				}
				return nil, nil, nil, e
			}
			return ws, raw, f, nil
		case *frame.ErrorMessage:
			errorMessage = f
		default:
			return nil, nil, nil, closeHandshake(ws, frame.CloseProtocolViolation, "expected WELCOME, got "+frame.TypeName(f.Type()))
		}
	}
}

// closeHandshake closes with code (bounded by the library's 5 s wait for the answer) and
// returns the transient error that ends the attempt.
func closeHandshake(ws *websocket.Conn, code frame.CloseCode, why string) *ConnectError {
	_ = ws.Close(websocket.StatusCode(code), truncateReason(why))
	return transient(nil, "%s (closed %s)", why, code)
}
