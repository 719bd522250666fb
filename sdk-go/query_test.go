package vyx

import (
	"testing"

	"github.com/vyx-dev/vyx/sdk-go/internal/vectors"
)

func TestQueryVectors(t *testing.T) {
	var file struct {
		Vectors []struct {
			Name  string     `json:"name"`
			Query string     `json:"query"`
			Pairs [][]string `json:"pairs"`
		}
	}
	vectors.Load(t, "query.json", &file)
	for _, v := range file.Vectors {
		got := ParseQuery(v.Query)
		ok := len(got) == len(v.Pairs)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i].Name == v.Pairs[i][0] && got[i].Value == v.Pairs[i][1]
		}
		if !ok {
			t.Errorf("%s: ParseQuery(%q) = %q, want %q", v.Name, v.Query, got, v.Pairs)
		}
	}
}
