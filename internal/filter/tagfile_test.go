package filter

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseTagFile(t *testing.T) {
	tests := []struct {
		spec   string
		name   string
		header string
		err    bool
	}{
		{"CACHEDIR.TAG", "CACHEDIR.TAG", "", false},
		{"CACHEDIR.TAG:Signature: 8a47", "CACHEDIR.TAG", "Signature: 8a47", false},
		{"tag:a:b", "tag", "a:b", false},
		{"tag:", "tag", "", false},
		{"sub/tag", "sub/tag", "", false},
		{":x", "", "", true},
		{"", "", "", true},
	}
	for _, tc := range tests {
		got, err := ParseTagFile(tc.spec)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "no name for exclusion tagfile provided") {
				t.Errorf("ParseTagFile(%q) error = %v", tc.spec, err)
			}
			continue
		}
		if err != nil || got.Name != tc.name || string(got.Header) != tc.header {
			t.Errorf("ParseTagFile(%q) = %q %q %v", tc.spec, got.Name, got.Header, err)
		}
	}
	if s := CacheDirTag.String(); s != "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55" {
		t.Fatalf("CacheDirTag = %q", s)
	}
	if (TagFile{Name: "x"}).String() != "x" {
		t.Fatal("String without header")
	}
}

func TestTagFileCheck(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return filepath.Dir(p)
	}
	good := write("good/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n# comment")
	short := write("short/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc5")
	wrong := write("wrong/CACHEDIR.TAG", "Signature: 0000000000000000000000000000000000000")
	empty := write("empty/.nobackup", "")
	none := write("none/file", "x")
	if err := os.MkdirAll(filepath.Join(root, "dangling"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing-target", filepath.Join(root, "dangling", "CACHEDIR.TAG")); err != nil {
		t.Fatal(err)
	}

	if ex, err := CacheDirTag.Check(ctx, good); !ex || err != nil {
		t.Errorf("good tag: %v %v", ex, err)
	}
	if ex, err := CacheDirTag.Check(ctx, short); ex || err == nil {
		t.Errorf("short tag: %v %v", ex, err)
	}
	if ex, err := CacheDirTag.Check(ctx, wrong); ex || !errors.Is(err, ErrTagMismatch) {
		t.Errorf("wrong tag: %v %v", ex, err)
	}
	if ex, err := CacheDirTag.Check(ctx, none); ex || err != nil {
		t.Errorf("no tag: %v %v", ex, err)
	}
	if ex, err := CacheDirTag.Check(ctx, filepath.Join(root, "dangling")); ex || err == nil {
		t.Errorf("dangling tag: %v %v", ex, err)
	}
	presence := TagFile{Name: ".nobackup"}
	if ex, err := presence.Check(ctx, empty); !ex || err != nil {
		t.Errorf("presence: %v %v", ex, err)
	}
	if ex, err := (TagFile{Name: "good/CACHEDIR.TAG"}).Check(ctx, root); !ex || err != nil {
		t.Errorf("name with a directory part: %v %v", ex, err)
	}
	if !presence.ExcludesChild("other") || presence.ExcludesChild(".nobackup") {
		t.Error("ExcludesChild")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CacheDirTag.Check(cctx, good); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"1", 1, false},
		{"2048", 2048, false},
		{"1b", 1, false},
		{"1B", 1, false},
		{"1k", 1 << 10, false},
		{"10K", 10 << 10, false},
		{"20m", 20 << 20, false},
		{"20M", 20 << 20, false},
		{"30g", 30 << 30, false},
		{"2t", 2 << 40, false},
		{"2T", 2 << 40, false},
		{"+1", 1, false},
		{"9223372036854775807", 1<<63 - 1, false},
		{"8388607t", 8388607 << 40, false},
		{"", 0, true},
		{"k", 0, true},
		{"1kb", 0, true},
		{"1.5k", 0, true},
		{" 1", 0, true},
		{"1x", 0, true},
		{"-1", 0, true},
		{"-1k", 0, true},
		{"9223372036854775807k", 0, true},
		{"8388608t", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

type fakeInfo struct {
	size int64
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return f.size }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

func TestTooLarge(t *testing.T) {
	if TooLarge(2000, fakeInfo{size: 2000}) || !TooLarge(1999, fakeInfo{size: 2000}) {
		t.Error("limit must be exclusive")
	}
	if TooLarge(0, fakeInfo{size: 0}) || !TooLarge(0, fakeInfo{size: 1}) {
		t.Error("zero limit")
	}
	if TooLarge(1, fakeInfo{size: 4096, mode: fs.ModeDir}) {
		t.Error("directories are never too large")
	}
	if !TooLarge(3, fakeInfo{size: 10, mode: fs.ModeSymlink}) {
		t.Error("symlinks are checked by their size")
	}
}
