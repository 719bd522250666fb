package frame

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type frameVector struct {
	Name  string         `json:"name"`
	Hex   string         `json:"hex"`
	Frame map[string]any `json:"frame"`
}

func fieldsOf(t *testing.T, v any) []Field {
	out := []Field{}
	for _, p := range v.([]any) {
		pair := p.([]any)
		out = append(out, Field{Name: pair[0].(string), Value: unhex(t, pair[1].(string))})
	}
	return out
}

func nonNil(fs []Field) []Field {
	if fs == nil {
		return []Field{}
	}
	return fs
}

// build turns a frames.json "frame" object into the Go frame it describes.
func build(t *testing.T, m map[string]any) Frame {
	u32 := func(k string) uint32 { return uint32(m[k].(float64)) }
	end, _ := m["end_stream"].(bool)
	switch m["type"] {
	case "DATA":
		return &Data{StreamID: u32("stream_id"), EndStream: end, Data: unhex(t, m["data"].(string))}
	case "REQUEST":
		upgrade := m["upgrade"].(bool)
		return &Request{StreamID: u32("stream_id"), EndStream: end, Upgrade: upgrade, RouteID: uint16(u32("route_id")),
			Method: m["method"].(string), Target: m["target"].(string),
			Params: fieldsOf(t, m["params"]), Headers: fieldsOf(t, m["headers"])}
	case "RESPONSE":
		return &Response{StreamID: u32("stream_id"), EndStream: end, Status: uint16(u32("status")),
			Headers: fieldsOf(t, m["headers"])}
	case "TRAILERS":
		return &Trailers{StreamID: u32("stream_id"), Headers: fieldsOf(t, m["headers"])}
	case "INFORMATIONAL":
		return &Informational{StreamID: u32("stream_id"), Status: uint16(u32("status")),
			Headers: fieldsOf(t, m["headers"])}
	case "RESET":
		return &Reset{StreamID: u32("stream_id"), Code: ResetCode(u32("code")), Reason: m["reason"].(string)}
	case "WINDOW":
		return &Window{StreamID: u32("stream_id"), Increment: u32("increment")}
	}
	// Control frames: the payload is the JSON value; decode its compact form with our decoder.
	t.Fatalf("build: not a binary frame: %v", m["type"])
	return nil
}

func normalize(f Frame) Frame {
	switch f := f.(type) {
	case *Request:
		c := *f
		c.Params, c.Headers = nonNil(c.Params), nonNil(c.Headers)
		return &c
	case *Response:
		c := *f
		c.Headers = nonNil(c.Headers)
		return &c
	case *Trailers:
		c := *f
		c.Headers = nonNil(c.Headers)
		return &c
	case *Informational:
		c := *f
		c.Headers = nonNil(c.Headers)
		return &c
	case *Hello:
		// Features are emitted only when not empty (§2.6): an empty list and none are one frame.
		c := *f
		if len(c.Features) == 0 {
			c.Features = nil
		}
		return &c
	case *Welcome:
		c := *f
		if len(c.Features) == 0 {
			c.Features = nil
		}
		return &c
	}
	return f
}

func TestFramesVectors(t *testing.T) {
	var file struct{ Vectors []frameVector }
	vectors.Load(t, "frames.json", &file)
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			msg := unhex(t, v.Hex)
			got, err := Decode(msg, MaxFrameSize)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if TypeName(got.Type()) != v.Frame["type"] {
				t.Fatalf("type %s, want %v", TypeName(got.Type()), v.Frame["type"])
			}
			if js, ok := v.Frame["json"]; ok {
				// Control frame: compare as JSON values, then check the re-encoding is the vector's bytes.
				var gotJSON, wantJSON any
				if err := json.Unmarshal(got.Encode()[HeaderSize:], &gotJSON); err != nil {
					t.Fatal(err)
				}
				wb, _ := json.Marshal(js)
				_ = json.Unmarshal(wb, &wantJSON)
				if !reflect.DeepEqual(gotJSON, wantJSON) {
					t.Fatalf("json %v, want %v", gotJSON, wantJSON)
				}
			} else {
				want := build(t, v.Frame)
				if !reflect.DeepEqual(normalize(got), normalize(want)) {
					t.Fatalf("decoded %#v, want %#v", got, want)
				}
				if enc := want.Encode(); !bytes.Equal(enc, msg) {
					t.Fatalf("encode %x, want %s", enc, v.Hex)
				}
			}
			if enc := got.Encode(); !bytes.Equal(enc, msg) {
				t.Fatalf("re-encode %x, want %s", enc, v.Hex)
			}
		})
	}
}

func TestMalformedVectors(t *testing.T) {
	var file struct {
		MaxFrameSize int `json:"max_frame_size"`
		Vectors      []struct {
			Name        string `json:"name"`
			Hex         string `json:"hex"`
			Error       string `json:"error"`
			CloseCode   *int   `json:"close_code"`
			StreamError bool   `json:"stream_error"`
		}
	}
	vectors.Load(t, "malformed.json", &file)
	kinds := map[string]bool{}
	for _, v := range file.Vectors {
		kinds[v.Error] = true
		t.Run(v.Name, func(t *testing.T) {
			_, err := Decode(unhex(t, v.Hex), file.MaxFrameSize)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want %s", err, v.Error)
			}
			if string(de.Kind) != v.Error {
				t.Fatalf("kind %s (%v), want %s", de.Kind, de, v.Error)
			}
			if v.CloseCode != nil && int(de.CloseCode()) != *v.CloseCode {
				t.Fatalf("close %d, want %d", de.CloseCode(), *v.CloseCode)
			}
			if de.IsStreamError() != v.StreamError {
				t.Fatalf("stream error %v, want %v", de.IsStreamError(), v.StreamError)
			}
		})
	}
	if len(kinds) < 16 {
		t.Fatalf("only %d error kinds in malformed.json", len(kinds))
	}
}

func TestFrameTooLarge(t *testing.T) {
	msg := make([]byte, MaxFrameSize)
	msg[5] = 1 // DATA on stream 1
	if _, err := Decode(msg, MaxFrameSize); err != nil {
		t.Fatalf("1048576 bytes: %v", err)
	}
	msg = append(msg, 0)
	_, err := Decode(msg, MaxFrameSize)
	var de *DecodeError
	if !errors.As(err, &de) || de.Kind != FrameTooLarge || de.CloseCode() != CloseFrameTooLarge {
		t.Fatalf("1048577 bytes: %v", err)
	}
}

// A decoded head owns its bytes (the connection reuses its read buffer for the next
// message), and a value appended to cannot overwrite the field after it in the copy the
// frame's fields share.
func TestDecodedHeadOwnsItsBytes(t *testing.T) {
	q := &Request{StreamID: 1, Method: "GET", Target: "/a", Params: []Field{{Name: "p", Value: []byte("v")}},
		Headers: []Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}}
	msg := q.Encode()
	f, err := Decode(msg, MaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		msg[i] = 'x'
	}
	got := f.(*Request)
	_ = append(got.Headers[0].Value, "overwrite"...)
	_ = append(got.Params[0].Value, "overwrite"...)
	if !reflect.DeepEqual(got, q) {
		t.Fatalf("decoded %+v, want %+v", got, q)
	}
}
