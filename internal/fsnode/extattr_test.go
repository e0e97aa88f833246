package fsnode

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendExtattrNames(t *testing.T) {
	raw := []byte("\x01a\x03bcd\x00\x05e.f g")
	got, err := appendExtattrNames([]byte("user.x\x00"), raw, "system.")
	if err != nil {
		t.Fatal(err)
	}
	want := "user.x\x00system.a\x00system.bcd\x00system.\x00system.e.f g\x00"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, err := appendExtattrNames(nil, nil, "user."); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %q, %v", got, err)
	}
	for _, bad := range []string{"\x02a", "\x01a\x05abc", "\x01"} {
		if _, err := appendExtattrNames(nil, []byte(bad), "user."); err == nil {
			t.Errorf("%q: truncated list accepted", bad)
		}
	}
}

// FuzzAppendExtattrNames: the decoder never panics, and a list it accepts
// that has no NUL byte (so that the output splits unambiguously) re-encodes
// to the same bytes.
func FuzzAppendExtattrNames(f *testing.F) {
	f.Add([]byte("\x01a\x03bcd"))
	f.Add([]byte{})
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("\x05ab"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := appendExtattrNames(nil, raw, "user.")
		if err != nil || bytes.IndexByte(raw, 0) >= 0 {
			return
		}
		var enc []byte
		for _, name := range strings.SplitAfter(string(out), "\x00") {
			if name == "" {
				continue
			}
			name = strings.TrimSuffix(strings.TrimPrefix(name, "user."), "\x00")
			enc = append(enc, byte(len(name)))
			enc = append(enc, name...)
		}
		if !bytes.Equal(enc, raw) {
			t.Fatalf("%q decoded to %q, which encodes to %q", raw, out, enc)
		}
	})
}
