package vyx

// The net/http side of a stream: the *http.Request a handler gets (full original path,
// query, host, remote address from the forwarding headers, path values, a streamed body)
// and the http.ResponseWriter it answers with (buffered like net/http's, then streamed
// within the flow-control window; Flush and http.ResponseController supported).

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

// serveRequest runs the route's handler for one stream (on a goroutine of w.handlers).
func (w *Worker) serveRequest(s *stream, r *frame.Request) {
	rt := w.routes[r.RouteID]
	req := newRequest(s, r, rt)
	rw := &responseWriter{s: s, header: http.Header{}, req: req, badNameLogged: &w.badNameLogged}
	rw.log = requestLog{base: w.log, id: req.Header.Get("X-Request-Id")}
	log := &rw.log
	defer func() {
		v := recover()
		if rw.hijacked {
			// The handler owns the conn, and the stream ends when it closes it.
			if v != nil && v != http.ErrAbortHandler {
				w.log.Error("vyx: handler panicked after Hijack", "method", req.Method, "target", r.Target, "panic", v, "stack", string(debug.Stack()))
			}
			return
		}
		if v != nil {
			if v == http.ErrAbortHandler {
				s.abort("handler aborted") // as net/http drops the connection: no answer
			} else {
				log.get().Error("vyx: handler panicked", "method", req.Method, "target", r.Target, "panic", v, "stack", string(debug.Stack()))
				rw.fail("handler panicked")
			}
		} else {
			rw.finish()
		}
		s.finish()
	}()
	rt.handler.ServeHTTP(rw, req)
}

// newRequest builds the *http.Request of a REQUEST as http.Server would from the same
// request line and headers: RequestURI is the raw target, URL its parse, Host the host
// header, RemoteAddr the client address the gateway forwarded.
func newRequest(s *stream, r *frame.Request, rt route) *http.Request {
	u, err := url.ParseRequestURI(r.Target)
	if err != nil {
		// A target net/http would refuse (a malformed %): kept raw, so handlers still run.
		path, query, _ := strings.Cut(r.Target, "?")
		u = &url.URL{Path: path, RawQuery: query}
	}
	// Every header and path parameter value is a slice of one string, and single-valued
	// headers share one backing array (as net/http's reader does): a few allocations per
	// request instead of two per field.
	var sb strings.Builder
	size := 0
	for _, f := range r.Headers {
		size += len(f.Value)
	}
	for _, p := range r.Params {
		size += len(p.Value)
	}
	sb.Grow(size)
	for _, f := range r.Headers {
		sb.Write(f.Value)
	}
	for _, p := range r.Params {
		sb.Write(p.Value)
	}
	values, at := sb.String(), 0
	next := func(n int) string {
		v := values[at : at+n]
		at += n
		return v
	}
	header := make(http.Header, len(r.Headers))
	shared := make([]string, len(r.Headers))
	host := ""
	for i, f := range r.Headers {
		v := next(len(f.Value))
		if f.Name == "host" {
			if host == "" {
				host = v
			}
			continue
		}
		k := canonicalKey(f.Name)
		if vs, repeated := header[k]; repeated {
			header[k] = append(vs, v)
		} else {
			shared[i] = v
			header[k] = shared[i : i+1 : i+1]
		}
	}
	// As net/http names them: HTTP/2 is "HTTP/2.0" (grpc-go's ServeHTTP needs ProtoMajor 2).
	major, minor := httpVersion(r.Headers)
	// Made on the stack and copied once by WithContext.
	base := http.Request{
		Method: r.Method, URL: u, Header: header, Host: host, RequestURI: r.Target,
		Proto:      protoName(major, minor),
		ProtoMajor: major, ProtoMinor: minor, RemoteAddr: remoteAddr(r.Headers),
		Body: http.NoBody, Pattern: rt.pattern,
	}
	if !r.EndStream && !r.Upgrade { // an upgrade's bytes come after the switch, by Hijack
		b := &body{s: s}
		if s.c.trailersOn() {
			// Filled when the body ends (§3.10); the map is shared with the handler's copy.
			base.Trailer = http.Header{}
			b.trailer = base.Trailer
		}
		base.Body = b
		base.ContentLength = -1
		if cl := header.Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				base.ContentLength = n
			}
		}
		if base.ContentLength < 0 && major == 1 {
			// As http.Server shows an HTTP/1.1 body without a length: chunked (the gateway
			// drops the hop-by-hop header itself). Its HTTP/2 server shows none.
			base.TransferEncoding = []string{"chunked"}
		}
	}
	req := base.WithContext(s.ctx)
	for _, p := range r.Params {
		v := next(len(p.Value))
		if p.Name != subtreeParam {
			req.SetPathValue(p.Name, v)
		}
	}
	return req
}

// protoName is Request.Proto for an HTTP version, without formatting the usual ones.
func protoName(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "HTTP/1.1"
	case major == 2 && minor == 0:
		return "HTTP/2.0"
	case major == 1 && minor == 0:
		return "HTTP/1.0"
	}
	return "HTTP/" + strconv.Itoa(major) + "." + strconv.Itoa(minor)
}

// requestLog is a request's logger carrying the gateway's request id, made on first use:
// most requests never log, and slog's With costs several allocations.
type requestLog struct {
	base *slog.Logger
	id   string // x-request-id, "" when the request has none
	l    *slog.Logger
}

func (r *requestLog) get() *slog.Logger {
	if r.l == nil {
		r.l = r.base
		if r.id != "" {
			r.l = r.base.With("request_id", r.id)
		}
	}
	return r.l
}

// remoteAddr is the client address as net/http writes it, "ip:0" or "[ip]:0" (the client's
// port is not forwarded), "" when the request names none (see clientIP).
func remoteAddr(headers []frame.Field) string {
	ip, ok := clientIP(headers)
	if !ok {
		return ""
	}
	return netip.AddrPortFrom(ip, 0).String()
}

// body is a request body: reading grants the gateway credit (§5), so a handler that does
// not read holds the upload where it is.
type body struct {
	s       *stream
	closed  bool
	trailer http.Header // the request's Trailer, nil when trailers are not negotiated
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("http: invalid Read on closed Body")
	}
	n, err := b.s.read(p)
	if err == io.EOF && b.trailer != nil && len(b.trailer) == 0 {
		// As net/http: Request.Trailer holds the trailers once Read has returned io.EOF.
		b.s.c.mu.Lock()
		for _, f := range b.s.trailers {
			k := http.CanonicalHeaderKey(f.Name)
			b.trailer[k] = append(b.trailer[k], string(f.Value))
		}
		b.s.c.mu.Unlock()
	}
	return n, err
}

// Close stops reading; the rest of the upload is refused when the handler returns.
func (b *body) Close() error { b.closed = true; return nil }

// How much a response buffers before its head is sent, as http.Server for the client's
// protocol: a response that fits is sent whole, with content-length and END_STREAM; a larger
// one is streamed (chunked to an HTTP/1.1 client).
const (
	bufferBeforeChunking = 2048 // net/http's bufferBeforeChunkingSize (HTTP/1.x)
	bufferBeforeHTTP2    = 4096 // its HTTP/2 server's handlerChunkWriteSize
)

// bufferSize is the buffer for r's response.
func bufferSize(r *http.Request) int {
	if r.ProtoMajor == 2 {
		return bufferBeforeHTTP2
	}
	return bufferBeforeChunking
}

type responseWriter struct {
	s      *stream
	log    requestLog
	req    *http.Request
	header http.Header

	status      int
	sent        http.Header // the header as of WriteHeader
	wroteHeader bool
	headSent    bool
	bodyWanted  bool
	hijacked    bool
	buf         []byte
	err         error
	// badNameLogged is the worker's: a header name that is not a token is logged once per
	// worker (an app echoing client input as names could flood the log otherwise).
	badNameLogged *atomic.Bool
}

func (rw *responseWriter) Header() http.Header { return rw.header }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		rw.log.get().Warn("vyx: superfluous WriteHeader call", "status", code, "target", rw.req.RequestURI)
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		rw.writeInterim(code)
		return
	}
	if code == http.StatusSwitchingProtocols && !rw.s.upgrade {
		return // a 101 answers an upgrade request only (§4.5)
	}
	rw.status, rw.wroteHeader = code, true
	rw.sent = rw.header.Clone()
	rw.dropUnsendable()
}

// writeInterim sends a 1xx as net/http does: the header set so far goes with it, and the
// map keeps it for the final response. Dropped when the gateway does not forward them.
func (rw *responseWriter) writeInterim(code int) {
	sent := rw.header.Clone()
	for name := range sent {
		if !frame.IsHeaderName(strings.ToLower(name)) {
			delete(sent, name) // as dropUnsendable, for the head
		}
	}
	if _, err := rw.s.sendInformational(code, sent); err != nil {
		rw.log.get().Warn("vyx: interim response not sent", "status", code, "why", err, "target", rw.req.RequestURI)
	}
}

// dropUnsendable removes from the head what http.Server would not send: names that are not
// tokens (it drops them silently; we log the first; http.TrailerPrefix keys are trailers,
// left to trailerFields), and for a 304 the Content-Type (the
// 204/304 Content-Length goes by the host rules, HOSTS.md §6).
func (rw *responseWriter) dropUnsendable() {
	for name := range rw.sent {
		if !frame.IsHeaderName(lowerName(name)) && !strings.HasPrefix(name, http.TrailerPrefix) {
			delete(rw.sent, name)
			if rw.badNameLogged.CompareAndSwap(false, true) {
				rw.log.get().Warn("vyx: response header name is not a token; dropped as net/http drops it (logged once per worker)", "name", name, "target", rw.req.RequestURI)
			}
		}
	}
	if rw.status == http.StatusNotModified {
		delete(rw.sent, "Content-Type")
	}
}

// bodyAllowed is net/http's bodyAllowedForStatus: no body on 1xx, 204 or 304.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199) && status != 204 && status != 304
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.hijacked {
		return 0, http.ErrHijacked
	}
	if rw.err != nil {
		return 0, rw.err
	}
	if !rw.headSent {
		if len(rw.buf)+len(p) <= bufferSize(rw.req) {
			rw.buf = append(rw.buf, p...)
			return len(p), nil
		}
		if err := rw.sendHead(p); err != nil {
			return 0, err
		}
		if len(rw.buf) > 0 {
			buffered := rw.buf
			rw.buf = nil
			if err := rw.bodyWrite(buffered, false); err != nil {
				return 0, err
			}
		}
	}
	if err := rw.bodyWrite(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (rw *responseWriter) bodyWrite(p []byte, end bool) error {
	if !rw.bodyWanted {
		return nil // HEAD: the body is dropped (§2.5.4)
	}
	if err := rw.s.write(p, end); err != nil {
		rw.err = err
		return err
	}
	return nil
}

// sniff sets Content-Type from the first bytes of the body (the buffer, then next), as
// net/http does, unless the handler set it (or set it to nil to prevent this) or set a
// Content-Encoding.
func (rw *responseWriter) sniff(next []byte) {
	_, set := rw.sent["Content-Type"]
	if set || rw.sent.Get("Content-Encoding") != "" || !bodyAllowed(rw.status) {
		return
	}
	first := rw.buf
	if len(first) < sniffLen && len(next) > 0 {
		first = append(first[:len(first):len(first)], next[:min(len(next), sniffLen-len(first))]...)
	}
	if len(first) > 0 {
		rw.sent.Set("Content-Type", http.DetectContentType(first))
	}
}

// sniffLen is how many bytes http.DetectContentType reads.
const sniffLen = 512

// sendHead sends the head for a streamed body; next is what is written after the buffer.
func (rw *responseWriter) sendHead(next []byte) error {
	rw.sniff(next)
	rw.headSent = true
	wanted, err := rw.s.sendHead(rw.status, rw.sent, nil, false)
	rw.bodyWanted = wanted
	return rw.headError(err)
}

func (rw *responseWriter) headError(err error) error {
	if err == nil {
		return nil
	}
	var ih *InvalidHeadError
	if errors.As(err, &ih) {
		rw.log.get().Error("vyx: the handler's response head cannot be sent; answered 500", "why", ih.Why, "target", rw.req.RequestURI)
	}
	rw.err = err
	return err
}

// Flush sends the head and everything written so far (http.Flusher).
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (rw *responseWriter) FlushError() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return rw.err
	}
	if !rw.headSent {
		if err := rw.sendHead(nil); err != nil {
			return err
		}
	}
	if len(rw.buf) > 0 {
		buffered := rw.buf
		rw.buf = nil
		return rw.bodyWrite(buffered, false)
	}
	return nil
}

// EnableFullDuplex is for http.ResponseController: a vyx stream always is (the request
// body can be read after the response started).
func (rw *responseWriter) EnableFullDuplex() error { return nil }

// finish completes the response when the handler returned: a response that fits the
// buffer goes whole (content-length, END_STREAM); a streamed one gets its END_STREAM, or
// TRAILERS when the handler set trailers and the connection carries them (§3.10).
func (rw *responseWriter) finish() {
	if rw.err != nil {
		return
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if trailers := rw.trailerFields(); len(trailers) > 0 && bodyAllowed(rw.status) && rw.s.c.trailersOn() {
		// Streamed, as net/http sends a response with trailers chunked.
		if rw.FlushError() != nil {
			return
		}
		if !rw.bodyWanted {
			_ = rw.bodyWrite(nil, true)
			return
		}
		if err := rw.s.sendTrailers(trailers); err != nil {
			rw.log.get().Error("vyx: the handler's trailers cannot be sent; stream reset", "why", err.Error(), "target", rw.req.RequestURI)
		}
		return
	}
	if !rw.headSent {
		rw.sniff(nil)
		rw.headSent = true
		whole := rw.buf
		if whole == nil {
			whole = []byte{}
		}
		wanted, err := rw.s.sendHead(rw.status, rw.sent, whole, len(whole) == 0)
		if rw.headError(err) != nil || !wanted {
			return
		}
		rw.bodyWanted = true
		_ = rw.bodyWrite(whole, true)
		return
	}
	_ = rw.bodyWrite(nil, true)
}

// trailerFields are the response's trailers as net/http finds them when the handler has
// returned: the values of the names the "Trailer" header announced at WriteHeader, and
// every http.TrailerPrefix key. Names a head could not carry are left out.
func (rw *responseWriter) trailerFields() []frame.Field {
	values := map[string][]string{}
	for _, v := range rw.sent["Trailer"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				values[strings.ToLower(name)] = rw.header[http.CanonicalHeaderKey(name)]
			}
		}
	}
	for k, vs := range rw.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			lower := strings.ToLower(name)
			values[lower] = append(values[lower], vs...)
		}
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	var fields []frame.Field
	for _, name := range names {
		if !frame.IsHeaderName(name) {
			continue
		}
		for _, v := range values[name] {
			if frame.IsHeaderValue([]byte(v)) {
				fields = append(fields, frame.Field{Name: name, Value: []byte(v)})
			}
		}
	}
	return fields
}

// fail ends a response whose handler panicked: 500 before the head, RESET handler_error
// after it (the client sees a cut body).
func (rw *responseWriter) fail(reason string) {
	if !rw.headSent {
		c := rw.s.c
		c.mu.Lock()
		if rw.s.err == nil {
			rw.s.internalError()
		}
		c.mu.Unlock()
		return
	}
	rw.s.abort(reason)
}
