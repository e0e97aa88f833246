package backend

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

var validName = strings.Repeat("ab", 32)

func TestCtxReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rd := NewCtxReader(ctx, strings.NewReader("hello"))
	buf := make([]byte, 2)
	if n, err := rd.Read(buf); n != 2 || err != nil {
		t.Fatalf("read before cancel: %d %v", n, err)
	}
	cancel()
	if n, err := rd.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %d %v", n, err)
	}

	// A cancellation during the read hands out nothing.
	ctx2, cancel2 := context.WithCancel(context.Background())
	rd = NewCtxReader(ctx2, readerFunc(func(p []byte) (int, error) {
		cancel2()
		return copy(p, "data"), nil
	}))
	if n, err := rd.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read cancelled midway: %d %v", n, err)
	}
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestExactBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		length int64
		ok     bool
		eof    bool // the error wraps io.ErrUnexpectedEOF
	}{
		{"exact", "0123456789", 10, true, false},
		{"empty", "", 0, true, false},
		{"short", "01234", 10, false, true},
		{"long", "0123456789x", 10, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, wrap := range []func(io.Reader) io.Reader{
				func(r io.Reader) io.Reader { return r },
				iotest.OneByteReader,
				iotest.DataErrReader,
			} {
				got, err := io.ReadAll(NewExactBody(wrap(strings.NewReader(tc.data)), tc.length))
				if tc.ok {
					if err != nil || string(got) != tc.data {
						t.Fatalf("got %q, %v", got, err)
					}
					continue
				}
				if !errors.Is(err, ErrLengthMismatch) {
					t.Fatalf("err = %v, want ErrLengthMismatch", err)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) != tc.eof {
					t.Fatalf("err = %v, unexpected-EOF %v", err, tc.eof)
				}
				// Never the complete body when the data is wrong.
				if int64(len(got)) >= tc.length {
					t.Fatalf("delivered %d of %d bytes despite the mismatch", len(got), tc.length)
				}
			}
		})
	}
}

func TestExactBodyPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := io.ReadAll(NewExactBody(iotest.ErrReader(boom), 5))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestProbeEOF(t *testing.T) {
	if err := ProbeEOF(strings.NewReader("")); err != nil {
		t.Fatalf("empty: %v", err)
	}
	if err := ProbeEOF(strings.NewReader("x")); !errors.Is(err, ErrLengthMismatch) {
		t.Fatalf("data: %v", err)
	}
	stuck := readerFunc(func([]byte) (int, error) { return 0, nil })
	if err := ProbeEOF(stuck); !errors.Is(err, ErrLengthMismatch) {
		t.Fatalf("no data, no EOF: %v", err)
	}
	boom := errors.New("boom")
	if err := ProbeEOF(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("error: %v", err)
	}
}

func TestExactReader(t *testing.T) {
	// Stops after n bytes, even if more are there.
	got, err := io.ReadAll(NewExactReader(strings.NewReader("0123456789"), 4, "file"))
	if err != nil || string(got) != "0123" {
		t.Fatalf("got %q, %v", got, err)
	}
	// The last bytes come with io.EOF.
	rd := NewExactReader(strings.NewReader("0123456789"), 4, "file")
	buf := make([]byte, 10)
	if n, err := rd.Read(buf); n != 4 || err != io.EOF {
		t.Fatalf("read = %d, %v; want 4, EOF", n, err)
	}
	// Zero bytes: EOF at once.
	if n, err := NewExactReader(strings.NewReader("x"), 0, "file").Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("empty read = %d, %v", n, err)
	}
	// Short: unexpected EOF naming what ended.
	got, err = io.ReadAll(NewExactReader(iotest.OneByteReader(strings.NewReader("01")), 4, "response body"))
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "01" || !strings.Contains(err.Error(), "response body ended 2 bytes early") {
		t.Fatalf("short: %q, %v", got, err)
	}
	// Other errors pass through.
	boom := errors.New("boom")
	if _, err := io.ReadAll(NewExactReader(iotest.ErrReader(boom), 4, "file")); !errors.Is(err, boom) {
		t.Fatalf("error: %v", err)
	}
}

func TestUnexpectedEOF(t *testing.T) {
	if err := UnexpectedEOF(io.EOF); err != io.ErrUnexpectedEOF {
		t.Fatalf("EOF -> %v", err)
	}
	boom := errors.New("boom")
	if err := UnexpectedEOF(boom); err != boom {
		t.Fatalf("other -> %v", err)
	}
	if err := UnexpectedEOF(nil); err != nil {
		t.Fatalf("nil -> %v", err)
	}
}

func TestParseContentRange(t *testing.T) {
	type res struct {
		start, end, total int64
		ok                bool
	}
	for in, want := range map[string]res{
		"bytes 0-9/10":     {0, 9, 10, true},
		"bytes 5-5/*":      {5, 5, -1, true},
		"bytes 10-20/30":   {10, 20, 30, true},
		"bytes 4-3/4":      {4, 3, 4, true}, // rclone's empty range at the end
		"bytes 0--1/0":     {0, -1, 0, true},
		"bytes 5-4/100":    {}, // empty, not at the end
		"bytes 5-4/*":      {},
		"bytes 7-3/10":     {},
		"bytes */10":       {},
		"bits 0-1/2":       {},
		"bytes -1-2/3":     {},
		"bytes 1-2":        {},
		"bytes 0-9/9":      {}, // end beyond total
		"bytes 1-2/3/4":    {},
		"bytes 0-9/ten":    {},
		"":                 {},
		"bytes 0-x/10":     {},
		"bytes  0-9/10":    {},
		"bytes 0-9/10 ":    {},
		"Bytes 0-9/10":     {},
		"bytes 00-09/0010": {0, 9, 10, true},
	} {
		s, e, tot, ok := ParseContentRange(in)
		if (res{s, e, tot, ok}) != want {
			t.Errorf("ParseContentRange(%q) = %d %d %d %v, want %v", in, s, e, tot, ok, want)
		}
	}
}

// FuzzParseContentRange checks the invariants of an accepted header.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-5/*", "bytes */10", "bytes 9-0/10", "bytes 0-9/9", "bytes -1-3/5", "bytes 1-2/3/4",
		"bytes 4-3/4", "bytes 5-3/4", "bytes 5-4/100", "bytes 5-4/*", "bytes 0--1/0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, ok := ParseContentRange(s)
		if !ok {
			return
		}
		// An empty range (end = start-1) is only accepted at the end of
		// the file, as rclone sends it.
		if start < 0 || end < start-1 || (total != -1 && total <= end) || (end == start-1 && total != start) {
			t.Fatalf("ParseContentRange(%q) = %d %d %d", s, start, end, total)
		}
	})
}

type lengthReader struct {
	io.Reader
	n int64
}

func (l lengthReader) Rewind() error { return nil }
func (l lengthReader) Length() int64 { return l.n }

func TestCheckSave(t *testing.T) {
	h := Handle{Type: core.PackFile, Name: validName}
	if n, err := CheckSave(h, NewByteReader([]byte("abc"))); n != 3 || err != nil {
		t.Fatalf("valid: %d %v", n, err)
	}
	if _, err := CheckSave(Handle{Type: core.PackFile, Name: "x"}, NewByteReader(nil)); err == nil {
		t.Fatal("invalid handle accepted")
	}
	if _, err := CheckSave(h, lengthReader{Reader: strings.NewReader(""), n: -1}); err == nil || !strings.Contains(err.Error(), "negative length -1") {
		t.Fatalf("negative length: %v", err)
	}
}

func TestCheckLoad(t *testing.T) {
	h := Handle{Type: core.IndexFile, Name: validName}
	for _, tc := range []struct {
		h      Handle
		length int
		offset int64
		ok     bool
	}{
		{h, 0, 0, true},
		{h, 10, 5, true},
		{Handle{Type: core.ConfigFile}, 0, 0, true},
		{h, -1, 0, false},
		{h, 0, -1, false},
		{Handle{Type: core.IndexFile, Name: "zz"}, 0, 0, false},
		{Handle{Type: core.FileType(99), Name: validName}, 0, 0, false},
	} {
		if err := CheckLoad(tc.h, tc.length, tc.offset); (err == nil) != tc.ok {
			t.Errorf("CheckLoad(%v, %d, %d) = %v", tc.h, tc.length, tc.offset, err)
		}
	}
}

func TestCheckListType(t *testing.T) {
	for _, ft := range core.AllFileTypes {
		if err := CheckListType(ft); err != nil {
			t.Errorf("%v: %v", ft, err)
		}
	}
	if err := CheckListType(core.FileType(99)); err == nil {
		t.Error("invalid type accepted")
	}
}

func TestLoadRange(t *testing.T) {
	for _, tc := range []struct {
		size   int64
		length int
		offset int64
		n      int64
		err    string // "" ok, "eof" wraps io.ErrUnexpectedEOF, "past" plain error
	}{
		{10, 0, 0, 10, ""},
		{10, 0, 4, 6, ""},
		{10, 3, 4, 3, ""},
		{10, 6, 4, 6, ""},
		{10, 0, 10, 0, ""}, // nothing at the very end
		{0, 0, 0, 0, ""},
		{10, 7, 4, 0, "eof"},
		{10, 1, 10, 0, "eof"},
		{10, 0, 11, 0, "past"},
	} {
		n, err := LoadRange(tc.size, tc.length, tc.offset)
		switch tc.err {
		case "":
			if err != nil || n != tc.n {
				t.Errorf("LoadRange(%d, %d, %d) = %d, %v; want %d", tc.size, tc.length, tc.offset, n, err, tc.n)
			}
		case "eof":
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("LoadRange(%d, %d, %d) = %v; want unexpected EOF", tc.size, tc.length, tc.offset, err)
			}
		case "past":
			if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("LoadRange(%d, %d, %d) = %v; want offset error", tc.size, tc.length, tc.offset, err)
			}
		}
	}
}

func TestListConfig(t *testing.T) {
	ctx := context.Background()
	var calls []FileInfo
	fn := func(fi FileInfo) error { calls = append(calls, fi); return nil }

	stat := func(_ context.Context, h Handle) (FileInfo, error) {
		if h.Type != core.ConfigFile {
			t.Fatalf("stat of %v", h)
		}
		return FileInfo{Size: 42}, nil
	}
	if err := ListConfig(ctx, stat, fn); err != nil || len(calls) != 1 || calls[0].Size != 42 {
		t.Fatalf("existing: %v %v", err, calls)
	}

	calls = nil
	missing := func(context.Context, Handle) (FileInfo, error) { return FileInfo{}, ErrNotExist }
	if err := ListConfig(ctx, missing, fn); err != nil || len(calls) != 0 {
		t.Fatalf("missing: %v %v", err, calls)
	}

	boom := errors.New("boom")
	failing := func(context.Context, Handle) (FileInfo, error) { return FileInfo{}, boom }
	if err := ListConfig(ctx, failing, fn); !errors.Is(err, boom) || len(calls) != 0 {
		t.Fatalf("failing: %v %v", err, calls)
	}

	stop := errors.New("stop")
	if err := ListConfig(ctx, stat, func(FileInfo) error { return stop }); err != stop {
		t.Fatalf("fn error: %v", err)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// creatable is a minimal Backend with a Create step, for OpenCreate.
type creatable struct {
	Backend
	createErr error
	closed    bool
}

func (c *creatable) Create(context.Context) error { return c.createErr }
func (c *creatable) Close() error                 { c.closed = true; return nil }

func TestOpenCreate(t *testing.T) {
	ctx := context.Background()
	c := &creatable{}
	b, err := OpenCreate(ctx, func(context.Context) (*creatable, error) { return c, nil })
	if err != nil || b != c || c.closed {
		t.Fatalf("success: %v %v closed=%v", b, err, c.closed)
	}

	boom := errors.New("boom")
	c = &creatable{createErr: boom}
	b, err = OpenCreate(ctx, func(context.Context) (*creatable, error) { return c, nil })
	if !errors.Is(err, boom) || b != nil || !c.closed {
		t.Fatalf("create failure: %v %v closed=%v", b, err, c.closed)
	}

	b, err = OpenCreate(ctx, func(context.Context) (*creatable, error) { return &creatable{}, boom })
	if !errors.Is(err, boom) || b != nil {
		t.Fatalf("open failure: %v %v", b, err)
	}
}
