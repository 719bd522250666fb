package protocol

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

// expectation is "ok" or {"close_code": N}.
type expectation struct {
	OK   bool
	Code int
}

func (e *expectation) UnmarshalJSON(b []byte) error {
	if string(b) == `"ok"` {
		e.OK = true
		return nil
	}
	var v struct {
		CloseCode int `json:"close_code"`
	}
	err := json.Unmarshal(b, &v)
	e.Code = v.CloseCode
	return err
}

func check(t *testing.T, err error, want expectation) {
	t.Helper()
	if want.OK {
		if err != nil {
			t.Fatalf("want ok, got %v", err)
		}
		return
	}
	var he *HandshakeError
	if !errors.As(err, &he) || int(he.Code) != want.Code {
		t.Fatalf("want close %d, got %v", want.Code, err)
	}
}

// controlFrame is the whole message of a control frame whose payload is raw JSON text.
func controlFrame(t byte, payload []byte) []byte {
	return append([]byte{t, 0, 0, 0, 0, 0}, payload...)
}

func TestHandshakeVectors(t *testing.T) {
	var file struct {
		Cases []struct {
			Name           string          `json:"name"`
			HeaderWorkerID string          `json:"header_worker_id"`
			Hello          json.RawMessage `json:"hello"`
			Expect         expectation     `json:"expect"`
		}
		WelcomeCases []struct {
			Name                string          `json:"name"`
			HelloMaxConcurrency uint64          `json:"hello_max_concurrency"`
			HelloFeatures       []string        `json:"hello_features"`
			Welcome             json.RawMessage `json:"welcome"`
			Expect              expectation     `json:"expect"`
			Connections         uint64          `json:"connections"` // ok cases only
		} `json:"welcome_cases"`
	}
	vectors.Load(t, "handshake.json", &file)
	if len(file.Cases) == 0 || len(file.WelcomeCases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range file.Cases {
		t.Run("hello/"+c.Name, func(t *testing.T) {
			f, err := frame.Decode(controlFrame(frame.TypeHello, c.Hello), frame.MaxFrameSize)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			h := f.(*frame.Hello)
			check(t, ValidateHello(h, c.HeaderWorkerID), c.Expect)
			// Our own encoding of it decodes to the same HELLO and validates the same way.
			g, err := frame.Decode(h.Encode(), frame.MaxFrameSize)
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			check(t, ValidateHello(g.(*frame.Hello), c.HeaderWorkerID), c.Expect)
		})
	}
	for _, c := range file.WelcomeCases {
		t.Run("welcome/"+c.Name, func(t *testing.T) {
			w, err := frame.DecodeWelcome(c.Welcome)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			check(t, ValidateWelcome(w, c.HelloMaxConcurrency, c.HelloFeatures), c.Expect)
			if c.Expect.OK && w.Connections != c.Connections {
				t.Fatalf("connections %d, want %d", w.Connections, c.Connections)
			}
		})
	}
}

// retryMaxConcurrency is the HELLO max_concurrency the retry.json WELCOME cases assume: the
// file does not say; 1024 is the largest value under which every case holds (the
// "above_hello" case sends 1025, the others 1).
const retryMaxConcurrency = 1024

func TestRetryCloseCodes(t *testing.T) {
	var file struct {
		Cases []struct {
			Name    string `json:"name"`
			Outcome struct {
				Close   *int    `json:"close"`
				Welcome *string `json:"welcome"`
			} `json:"outcome"`
			WorkerCloses *int `json:"worker_closes"`
			Retry        bool `json:"retry"`
		}
	}
	vectors.Load(t, "retry.json", &file)
	ran := 0
	for _, c := range file.Cases {
		switch {
		case c.Outcome.Close != nil:
			ran++
			t.Run(c.Name, func(t *testing.T) {
				code := frame.CloseCode(*c.Outcome.Close)
				if code.IsPermanent() == c.Retry {
					t.Fatalf("%v: IsPermanent = %v, retry = %v", code, code.IsPermanent(), c.Retry)
				}
			})
		case c.Outcome.Welcome != nil:
			ran++
			t.Run(c.Name, func(t *testing.T) {
				var code frame.CloseCode
				w, err := frame.DecodeWelcome([]byte(*c.Outcome.Welcome))
				if err != nil {
					var de *frame.DecodeError
					if !errors.As(err, &de) {
						t.Fatal(err)
					}
					code = frame.CloseProtocolViolation // a WELCOME that does not decode: 4005 (§2.3)
				} else {
					var he *HandshakeError
					if !errors.As(ValidateWelcome(w, retryMaxConcurrency, nil), &he) {
						t.Fatal("WELCOME accepted")
					}
					code = he.Code
				}
				if int(code) != *c.WorkerCloses || code.IsPermanent() == c.Retry {
					t.Fatalf("worker closes %v (permanent %v), want %d retry %v", code, code.IsPermanent(), *c.WorkerCloses, c.Retry)
				}
			})
		}
	}
	if ran == 0 {
		t.Fatal("no close-code cases")
	}
}

func TestWorkerIDVectors(t *testing.T) {
	var file struct {
		Cases []struct {
			ID    string `json:"id"`
			Valid bool   `json:"valid"`
		}
	}
	vectors.Load(t, "worker_id.json", &file)
	for i, c := range file.Cases {
		if IsWorkerID(c.ID) != c.Valid {
			t.Errorf("case %d: IsWorkerID(%q) = %v, want %v", i, c.ID, !c.Valid, c.Valid)
		}
	}
}

func u64(t *testing.T, s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBackoffVectors(t *testing.T) {
	var file struct {
		BaseMS     uint64   `json:"base_ms"`
		CapMS      uint64   `json:"cap_ms"`
		StableMS   uint64   `json:"stable_ms"`
		EnvelopeMS []uint64 `json:"envelope_ms"`
		SplitMix64 []struct {
			Seed    string
			Outputs []string
		}
		Delays []struct {
			Seed     string
			DelaysMS []uint64 `json:"delays_ms"`
		}
	}
	vectors.Load(t, "backoff.json", &file)
	if file.BaseMS != BackoffBaseMS || file.CapMS != BackoffCapMS || file.StableMS != BackoffStableMS {
		t.Fatalf("parameters %d/%d/%d", file.BaseMS, file.CapMS, file.StableMS)
	}
	for n, want := range file.EnvelopeMS {
		if got := EnvelopeMS(uint32(n)); got != want {
			t.Errorf("envelope(%d) = %d, want %d", n, got, want)
		}
	}
	if EnvelopeMS(^uint32(0)) != BackoffCapMS {
		t.Error("envelope does not saturate")
	}
	for _, s := range file.SplitMix64 {
		g := NewSplitMix64(u64(t, s.Seed))
		for i, o := range s.Outputs {
			if got := g.Next(); got != u64(t, o) {
				t.Errorf("seed %s output %d = %d, want %s", s.Seed, i, got, o)
			}
		}
	}
	for _, d := range file.Delays {
		b := NewBackoff(u64(t, d.Seed))
		for n, want := range d.DelaysMS {
			if b.Attempt() != uint32(n) {
				t.Fatalf("attempt %d, want %d", b.Attempt(), n)
			}
			if got := b.DelayMS(); got != want {
				t.Errorf("seed %s delay(%d) = %d, want %d", d.Seed, n, got, want)
			}
		}
		b.Reset()
		if b.Attempt() != 0 {
			t.Error("Reset")
		}
	}
}

type flowEvent struct {
	Send         *int    `json:"send"`
	Sent         *int    `json:"sent"`
	Grant        *uint32 `json:"grant"`
	Data         *int    `json:"data"`
	EndStream    bool    `json:"end_stream"`
	Consume      *uint32 `json:"consume"`
	WindowUpdate *uint32 `json:"window_update"`
	Window       *int64  `json:"window"`
	Close        *int    `json:"close"`
}

type flowCase struct {
	Name          string      `json:"name"`
	InitialWindow uint32      `json:"initial_window"`
	Events        []flowEvent `json:"events"`
}

func TestFlowVectors(t *testing.T) {
	var file struct {
		Send    []flowCase `json:"send"`
		Receive []flowCase `json:"receive"`
	}
	vectors.Load(t, "flow.json", &file)
	if len(file.Send) == 0 || len(file.Receive) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range file.Send {
		t.Run("send/"+c.Name, func(t *testing.T) {
			w := NewSendWindow(c.InitialWindow)
			for i, e := range c.Events {
				switch {
				case e.Send != nil:
					if got := w.Reserve(*e.Send); got != *e.Sent {
						t.Fatalf("event %d: sent %d, want %d", i, got, *e.Sent)
					}
				case e.Grant != nil:
					ok := w.Grant(*e.Grant)
					if e.Close != nil {
						if ok || *e.Close != int(frame.CloseFlowControl) {
							t.Fatalf("event %d: grant accepted, want close %d", i, *e.Close)
						}
						return
					}
					if !ok {
						t.Fatalf("event %d: grant refused", i)
					}
				}
				if e.Window != nil && w.Available() != *e.Window {
					t.Fatalf("event %d: window %d, want %d", i, w.Available(), *e.Window)
				}
			}
		})
	}
	for _, c := range file.Receive {
		t.Run("receive/"+c.Name, func(t *testing.T) {
			w := NewRecvWindow(c.InitialWindow)
			for i, e := range c.Events {
				switch {
				case e.Data != nil:
					ok := w.Data(*e.Data, e.EndStream)
					if e.Close != nil {
						if ok || *e.Close != int(frame.CloseFlowControl) {
							t.Fatalf("event %d: data accepted, want close %d", i, *e.Close)
						}
						return
					}
					if !ok {
						t.Fatalf("event %d: data refused", i)
					}
				case e.Consume != nil:
					if got := w.Consume(*e.Consume); got != *e.WindowUpdate {
						t.Fatalf("event %d: window_update %d, want %d", i, got, *e.WindowUpdate)
					}
				}
				if e.Window != nil && w.Remaining() != *e.Window {
					t.Fatalf("event %d: window %d, want %d", i, w.Remaining(), *e.Window)
				}
			}
		})
	}
}

func TestHeartbeatVectors(t *testing.T) {
	var file struct {
		Misses uint32 `json:"misses"`
		Cases  []struct {
			Name       string   `json:"name"`
			Events     []string `json:"events"`
			DeadAtTick *int     `json:"dead_at_tick"`
		}
	}
	vectors.Load(t, "heartbeat.json", &file)
	if file.Misses != HeartbeatMisses || len(file.Cases) == 0 {
		t.Fatalf("misses %d, %d cases", file.Misses, len(file.Cases))
	}
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var hb Heartbeat
			ticks, dead := 0, 0
			for _, e := range c.Events {
				switch e {
				case "recv":
					hb.Received()
				case "tick":
					ticks++
					if hb.Tick() {
						dead = ticks
					}
				case "stall":
					// This side did not run: no tick and no read. A ticker that drops missed
					// ticks fires once afterwards, which is the next "tick" event.
				default:
					t.Fatalf("unknown event %q", e)
				}
				if dead != 0 {
					break
				}
			}
			switch {
			case c.DeadAtTick == nil && dead != 0:
				t.Fatalf("dead at tick %d, want alive", dead)
			case c.DeadAtTick != nil && dead != *c.DeadAtTick:
				t.Fatalf("dead at tick %d, want %d", dead, *c.DeadAtTick)
			}
		})
	}
}

func TestPatternShape(t *testing.T) {
	for in, want := range map[string]string{"/a/{id}/{*rest}": "/a/{}/{*}", "/": "/", "/a//b": "/a//b"} {
		if got, err := PatternShape(in); err != nil || got != want {
			t.Errorf("PatternShape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
