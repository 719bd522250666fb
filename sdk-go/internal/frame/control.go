package frame

import "sort"

// Route is one entry of a HELLO or ROUTES route list (§3.8). ID is read as 0..=2^64−1;
// its range (0..=65535) is checked by validation, not decoding (§2.4).
type Route struct {
	ID     uint64
	Method string
	Path   string
	// Idempotent declares that repeating one of the route's requests is safe whatever its
	// method: the gateway may retry it on another replica. Optional (false when absent or
	// null); emitted only when true.
	Idempotent bool
}

// Hello is the worker's first frame (§2.3, §3.8). Integers hold any decoded value
// 0..=2^64−1; vyx.ValidateHello checks the ranges.
type Hello struct {
	Protocol       uint64
	WorkerID       string
	Instance       string // optional, "" when absent
	SDK            string // optional, "" when absent
	MaxConcurrency uint64
	Routes         []Route
	Labels         map[string]string // optional, empty when absent; emitted in key order
	Features       []string          // optional (§2.6); emitted only when not empty
}

// Welcome is the gateway's answer to a valid HELLO (§2.3, §3.8).
type Welcome struct {
	Protocol       uint64
	Gateway        string
	ConnectionID   string
	HeartbeatMS    uint64
	InitialWindow  uint64
	MaxFrameSize   uint64
	MaxConcurrency uint64
	// Connections is how many connections the gateway asks this worker to hold to this
	// address, one per gateway shard (§3.8, §9.1). Optional: 1 when absent or null;
	// emitted only when it is not 1, so that a WELCOME asking for one is v1's.
	Connections uint64
	Features    []string // optional (§2.6); emitted only when not empty
}

// Drain announces that the sender stops taking new streams (§7).
type Drain struct {
	Reason     string
	DeadlineMS uint64
}

// Routes replaces the connection's route set (§3.8), worker → gateway.
type Routes struct {
	Routes []Route
}

// ErrorMessage is an ERROR frame (§3.8): the sender closes with Code right after it.
type ErrorMessage struct {
	Code    CloseCode // 0..=65535; a larger value does not decode
	Message string
}

// Type returns TypeHello.
func (*Hello) Type() byte { return TypeHello }

// Type returns TypeWelcome.
func (*Welcome) Type() byte { return TypeWelcome }

// Type returns TypeDrain.
func (*Drain) Type() byte { return TypeDrain }

// Type returns TypeRoutes.
func (*Routes) Type() byte { return TypeRoutes }

// Type returns TypeError.
func (*ErrorMessage) Type() byte { return TypeError }

// Encode returns the whole message: compact JSON, keys in the order of §3.8, every field
// (Features only when it is not empty, so that a HELLO without extensions is v1's).
func (h *Hello) Encode() []byte {
	w := &jsonWriter{b: header(TypeHello, false, 0, 128)}
	w.open()
	w.uint("protocol", h.Protocol)
	w.str("worker_id", h.WorkerID)
	w.str("instance", h.Instance)
	w.str("sdk", h.SDK)
	w.uint("max_concurrency", h.MaxConcurrency)
	w.routes("routes", h.Routes)
	w.key("labels")
	keys := make([]string, 0, len(h.Labels))
	for k := range h.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.open()
	for _, k := range keys {
		w.str(k, h.Labels[k])
	}
	w.close()
	w.strs("features", h.Features)
	w.close()
	return w.b
}

// Encode returns the whole message.
func (m *Welcome) Encode() []byte {
	w := &jsonWriter{b: header(TypeWelcome, false, 0, 160)}
	w.open()
	w.uint("protocol", m.Protocol)
	w.str("gateway", m.Gateway)
	w.str("connection_id", m.ConnectionID)
	w.uint("heartbeat_ms", m.HeartbeatMS)
	w.uint("initial_window", m.InitialWindow)
	w.uint("max_frame_size", m.MaxFrameSize)
	w.uint("max_concurrency", m.MaxConcurrency)
	if m.Connections != 1 {
		w.uint("connections", m.Connections)
	}
	w.strs("features", m.Features)
	w.close()
	return w.b
}

// Encode returns the whole message.
func (d *Drain) Encode() []byte {
	w := &jsonWriter{b: header(TypeDrain, false, 0, 48)}
	w.open()
	w.str("reason", d.Reason)
	w.uint("deadline_ms", d.DeadlineMS)
	w.close()
	return w.b
}

// Encode returns the whole message.
func (r *Routes) Encode() []byte {
	w := &jsonWriter{b: header(TypeRoutes, false, 0, 64)}
	w.open()
	w.routes("routes", r.Routes)
	w.close()
	return w.b
}

// Encode returns the whole message.
func (e *ErrorMessage) Encode() []byte {
	w := &jsonWriter{b: header(TypeError, false, 0, 32+len(e.Message))}
	w.open()
	w.uint("code", uint64(e.Code))
	w.str("message", e.Message)
	w.close()
	return w.b
}

// decodeControl decodes a control payload by the rules of §3.8; nil and a detail on failure.
func decodeControl(t byte, p []byte) (Frame, string) {
	o, detail := parseObject(p)
	if o == nil {
		return nil, detail
	}
	f := &fields{o: o}
	var out Frame
	switch t {
	case TypeHello:
		out = &Hello{
			Protocol:       f.uint("protocol"),
			WorkerID:       f.str("worker_id", true),
			Instance:       f.str("instance", false),
			SDK:            f.str("sdk", false),
			MaxConcurrency: f.uint("max_concurrency"),
			Routes:         f.routes("routes"),
			Labels:         f.labels("labels"),
			Features:       f.strs("features"),
		}
	case TypeWelcome:
		out = &Welcome{
			Protocol:       f.uint("protocol"),
			Gateway:        f.str("gateway", true),
			ConnectionID:   f.str("connection_id", true),
			HeartbeatMS:    f.uint("heartbeat_ms"),
			InitialWindow:  f.uint("initial_window"),
			MaxFrameSize:   f.uint("max_frame_size"),
			MaxConcurrency: f.uint("max_concurrency"),
			Connections:    f.uintOr("connections", 1),
			Features:       f.strs("features"),
		}
	case TypeDrain:
		out = &Drain{Reason: f.str("reason", true), DeadlineMS: f.uint("deadline_ms")}
	case TypeRoutes:
		out = &Routes{Routes: f.routes("routes")}
	case TypeError:
		code := f.uint("code")
		if code > 65535 {
			f.wrong("code", "an integer 0..=65535")
		}
		out = &ErrorMessage{Code: CloseCode(code), Message: f.str("message", true)}
	}
	if f.err != "" {
		return nil, f.err
	}
	return out, ""
}

// DecodeHello decodes a HELLO payload (the JSON after the 6-byte header) by §3.8.
// A failure is a *DecodeError of kind invalid_control_payload (close 4001).
func DecodeHello(payload []byte) (*Hello, error) {
	f, d := decodeControl(TypeHello, payload)
	if f == nil {
		return nil, &DecodeError{Kind: InvalidControlPayload, Type: TypeHello, HeaderOK: true, Detail: d}
	}
	return f.(*Hello), nil
}

// DecodeWelcome decodes a WELCOME payload by §3.8 (failure: invalid_control_payload, 4005).
func DecodeWelcome(payload []byte) (*Welcome, error) {
	f, d := decodeControl(TypeWelcome, payload)
	if f == nil {
		return nil, &DecodeError{Kind: InvalidControlPayload, Type: TypeWelcome, HeaderOK: true, Detail: d}
	}
	return f.(*Welcome), nil
}
