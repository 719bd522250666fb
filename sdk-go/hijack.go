package vyx

// Upgraded connections (PROTOCOL.md §4.5, HOSTS.md §7a) the net/http way: a handler of an
// upgrade request hijacks the ResponseWriter (http.Hijacker, http.ResponseController) and
// gets a net.Conn over the stream (session_upgraded.go), so WebSocket libraries that accept on net/http work
// unchanged. Two styles are met, as http.Server meets them: coder/websocket writes its 101
// with WriteHeader and then hijacks; gorilla/websocket hijacks and writes the raw
// "HTTP/1.1 101 ..." head itself, which the conn parses into RESPONSE.

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/netip"
)

// ErrNotUpgrade is Hijack's error on a request that did not ask to switch protocols: a
// vyx stream carries raw bytes only once an upgrade's 101 has been sent.
var ErrNotUpgrade = errors.New("vyx: only an upgrade request (Connection: upgrade) can be hijacked")

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

// remoteNetAddr is the client's address as the request's RemoteAddr ("ip:0") names it.
func remoteNetAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return vyxAddr("client")
}
