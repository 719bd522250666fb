package vyx

// Upgraded connections (PROTOCOL.md §4.5, HOSTS.md §7a) the net/http way: a handler of an
// upgrade request hijacks the ResponseWriter (http.Hijacker, http.ResponseController) and
// gets a net.Conn over the stream, so WebSocket libraries that accept on net/http work
// unchanged. Two styles are met, as http.Server meets them: coder/websocket writes its 101
// with WriteHeader and then hijacks; gorilla/websocket hijacks and writes the raw
// "HTTP/1.1 101 ..." head itself, which the conn parses into RESPONSE.

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// ErrNotUpgrade is Hijack's error on a request that did not ask to switch protocols: a
// vyx stream carries raw bytes only once an upgrade's 101 has been sent.
var ErrNotUpgrade = errors.New("vyx: only an upgrade request (Connection: upgrade) can be hijacked")

// maxRawHead bounds a response head written raw to a hijacked conn (gorilla's style).
const maxRawHead = 64 << 10

// Hijack implements http.Hijacker for an upgrade request: the returned net.Conn reads the
// client's bytes and writes to the client once the 101 is sent. The handler owns the conn
// from then on, and the stream ends when it closes it.
//
//	c, err := websocket.Accept(w, r, nil) // coder/websocket: WriteHeader(101), then Hijack
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !rw.s.upgrade {
		return nil, nil, ErrNotUpgrade
	}
	if rw.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if rw.headSent {
		return nil, nil, errors.New("vyx: Hijack after the response head was sent")
	}
	conn := &upgradedConn{s: rw.s, remote: remoteNetAddr(rw.req.RemoteAddr)}
	if rw.wroteHeader {
		// http.Server sends a head written before Hijack (coder/websocket's 101).
		rw.sniff(nil)
		if _, err := rw.s.sendHead(rw.status, rw.sent, nil, false); err != nil {
			return nil, nil, rw.headError(err)
		}
		conn.headSent = true
		if len(rw.buf) > 0 {
			if err := rw.s.write(rw.buf, false); err != nil {
				return nil, nil, err
			}
		}
	}
	rw.headSent, rw.hijacked, rw.buf = true, true, nil
	return conn, bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn)), nil
}

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

// remoteNetAddr is the client's address as the request's RemoteAddr ("ip:0") names it.
func remoteNetAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return vyxAddr("client")
}
