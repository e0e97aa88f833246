package core

import (
	"encoding/json"
	"strings"
	"testing"
)

// generalUnmarshal is the slow path of ID.UnmarshalJSON: a JSON string
// decoded by encoding/json, then ParseID.
func generalUnmarshal(b []byte) (ID, error) {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return ID{}, err
	}
	return ParseID(s)
}

func TestIDUnmarshalJSON(t *testing.T) {
	id := Hash([]byte("x"))
	good, _ := json.Marshal(id)
	upper := []byte(strings.ToUpper(string(good)))
	escaped := []byte(`"\u0030` + string(good[2:]))
	for _, c := range []struct {
		in   []byte
		want ID
		ok   bool
	}{
		{good, id, true},
		{upper, id, true}, // hex accepts both cases, like ParseID
		{escaped, func() ID { v, _ := generalUnmarshal(escaped); return v }(), true},
		{[]byte(`"` + strings.Repeat("g", 64) + `"`), ID{}, false},
		{good[:len(good)-1], ID{}, false},
		{[]byte(`"abc"`), ID{}, false},
		{[]byte(`null`), ID{}, false},
		{[]byte(`123`), ID{}, false},
	} {
		var got ID
		err := got.UnmarshalJSON(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("UnmarshalJSON(%s) = %v, %v; want %v ok=%v", c.in, got.Str(), err, c.want.Str(), c.ok)
		}
	}
	// inside a document, through encoding/json
	var v struct{ ID ID }
	if err := json.Unmarshal([]byte(`{"ID":`+string(good)+`}`), &v); err != nil || v.ID != id {
		t.Fatalf("in a document: %v %v", v.ID.Str(), err)
	}
}

// FuzzIDUnmarshalJSON: the fast path never accepts what the general path
// rejects, and agrees with it on what both accept.
func FuzzIDUnmarshalJSON(f *testing.F) {
	good, _ := json.Marshal(Hash([]byte("seed")))
	f.Add(good)
	f.Add([]byte(strings.ToUpper(string(good))))
	f.Add([]byte(`"\u0030` + string(good[2:])))
	f.Add([]byte(`"zz"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got ID
		err := got.UnmarshalJSON(b)
		want, werr := generalUnmarshal(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("UnmarshalJSON(%q): err %v, general path err %v", b, err, werr)
		}
		if err == nil && got != want {
			t.Fatalf("UnmarshalJSON(%q) = %v, general path %v", b, got, want)
		}
	})
}
