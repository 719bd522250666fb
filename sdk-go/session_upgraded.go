package vyx

// An upgrade stream after its 101 as a net.Conn (PROTOCOL.md §4.5, HOSTS.md §7a): what
// Hijack (hijack.go) hands a handler. The twin of the Rust core's byte pipe,
// core/src/session/upgraded.rs (AsyncRead + AsyncWrite over the same stream calls); this
// one also takes the raw response head gorilla/websocket writes itself.

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxRawHead bounds a response head written raw to a hijacked conn (gorilla's style).
const maxRawHead = 64 << 10

// upgradedConn is a net.Conn over an upgrade stream: Read is the client's bytes (io.EOF at
// its half-close), Write goes out as DATA within the window, CloseWrite half-closes and
// Close ends the stream.
type upgradedConn struct {
	s      *stream
	remote net.Addr

	mu       sync.Mutex // the write side and the deadlines
	headSent bool
	raw      []byte // a raw response head being written, up to its blank line
	readBy   time.Time
	closed   bool
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closed, by := c.closed, c.readBy
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	var deadline <-chan time.Time
	if !by.IsZero() {
		t := time.NewTimer(time.Until(by))
		defer t.Stop()
		deadline = t.C
	}
	return c.s.readUntil(p, deadline)
}

func (c *upgradedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if c.headSent {
		// Not under c.mu: a write waiting for credit must not hold up Close.
		c.mu.Unlock()
		if err := c.s.write(p, false); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	defer c.mu.Unlock()
	c.raw = append(c.raw, p...)
	end := bytes.Index(c.raw, []byte("\r\n\r\n"))
	if end < 0 {
		if len(c.raw) > maxRawHead {
			return 0, errors.New("vyx: raw response head larger than 64 KiB")
		}
		return len(p), nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(c.raw[:end+4])), nil)
	if err != nil {
		return 0, err
	}
	if _, err := c.s.sendHead(resp.StatusCode, resp.Header, nil, false); err != nil {
		return 0, err
	}
	c.headSent = true
	rest := c.raw[end+4:]
	c.raw = nil
	if len(rest) > 0 {
		if err := c.s.write(rest, false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// CloseWrite half-closes: END_STREAM, the client reads EOF and may still send.
func (c *upgradedConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.headSent {
		return net.ErrClosed
	}
	return c.s.write(nil, true)
}

// Close ends the stream: END_STREAM after what was written, and the client's side
// refused (RESET no_error) if still open; a conn closed before any head aborts it.
func (c *upgradedConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	headSent := c.headSent
	c.mu.Unlock()
	if !headSent {
		c.s.abort("upgraded connection closed before its response head")
	} else {
		_ = c.s.write(nil, true) // an error: already ended or reset
	}
	c.s.finish()
	return nil
}

// LocalAddr is the gateway's side as the worker knows it: not a socket of this process.
func (c *upgradedConn) LocalAddr() net.Addr  { return vyxAddr("gateway") }
func (c *upgradedConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read deadline, which a Read takes when it starts; writes wait on
// flow-control credit only, bounded by the gateway's timeouts.upgrade_idle.
func (c *upgradedConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *upgradedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readBy = t
	c.mu.Unlock()
	return nil
}

func (c *upgradedConn) SetWriteDeadline(time.Time) error { return nil }

// vyxAddr is an address that is not a socket's.
type vyxAddr string

func (a vyxAddr) Network() string { return "vyx" }
func (a vyxAddr) String() string  { return string(a) }
