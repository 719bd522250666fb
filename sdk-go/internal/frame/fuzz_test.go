package frame

import (
	"encoding/hex"
	"os"
	"reflect"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

// seeds returns every message of frames.json and malformed.json, and the control payloads
// among them when payloadsOf is a control type.
func seeds(f *testing.F, payloadsOf byte) {
	for _, name := range []string{"frames.json", "malformed.json"} {
		var file struct{ Vectors []struct{ Hex string } }
		vectors.Load(f, name, &file)
		for _, v := range file.Vectors {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				f.Fatal(err)
			}
			if payloadsOf == 0 {
				f.Add(b)
			} else if len(b) >= HeaderSize && b[0] == payloadsOf {
				f.Add(b[HeaderSize:])
			}
		}
	}
	// handshake.json payloads, raw.
	b, err := os.ReadFile(vectors.Path("handshake.json"))
	if err == nil && payloadsOf != 0 {
		f.Add(b[:min(len(b), 4096)])
	}
}

// roundTrip checks that fr re-encodes to bytes that decode to the same frame.
func roundTrip(t *testing.T, fr Frame) {
	enc := fr.Encode()
	again, err := Decode(enc, len(enc)+MaxFrameSize)
	if err != nil {
		t.Fatalf("re-encoding %x of %#v does not decode: %v", enc, fr, err)
	}
	if !reflect.DeepEqual(normalize(again), normalize(fr)) {
		t.Fatalf("round trip changed the frame: %#v -> %#v", fr, again)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	seeds(f, 0)
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := Decode(msg, MaxFrameSize)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		roundTrip(t, fr)
	})
}

func FuzzDecodeHello(f *testing.F) {
	seeds(f, TypeHello)
	f.Add([]byte(`{"protocol":1,"worker_id":"a","max_concurrency":1,"routes":[],"labels":{"k":"\ud83d\ude00"}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, err := DecodeHello(payload)
		if err != nil {
			if de, ok := err.(*DecodeError); !ok || de.CloseCode() != CloseBadHello {
				t.Fatalf("error %v", err)
			}
			return
		}
		roundTrip(t, h)
	})
}

func FuzzDecodeWelcome(f *testing.F) {
	seeds(f, TypeWelcome)
	f.Fuzz(func(t *testing.T, payload []byte) {
		w, err := DecodeWelcome(payload)
		if err != nil {
			if de, ok := err.(*DecodeError); !ok || de.CloseCode() != CloseProtocolViolation {
				t.Fatalf("error %v", err)
			}
			return
		}
		roundTrip(t, w)
	})
}
