package vyx

import (
	"net/netip"
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

func TestClientVectors(t *testing.T) {
	var file struct {
		Vectors []struct {
			Name     string      `json:"name"`
			Headers  [][2]string `json:"headers"`
			ClientIP *string     `json:"client_ip"`
			Scheme   string      `json:"scheme"`
			Version  [2]int      `json:"http_version"`
		}
	}
	vectors.Load(t, "client.json", &file)
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range file.Vectors {
		var headers []frame.Field
		for _, h := range v.Headers {
			headers = append(headers, frame.Field{Name: h[0], Value: []byte(h[1])})
		}
		ip, ok := clientIP(headers)
		switch {
		case v.ClientIP == nil && ok:
			t.Errorf("%s: clientIP = %v, want none", v.Name, ip)
		case v.ClientIP != nil && (!ok || ip != netip.MustParseAddr(*v.ClientIP)):
			t.Errorf("%s: clientIP = %v, %v, want %s", v.Name, ip, ok, *v.ClientIP)
		}
		if major, minor := httpVersion(headers); [2]int{major, minor} != v.Version {
			t.Errorf("%s: httpVersion = %d.%d, want %v", v.Name, major, minor, v.Version)
		}
		if got := scheme(headers); got != v.Scheme {
			t.Errorf("%s: scheme = %q, want %q", v.Name, got, v.Scheme)
		}
	}
}
