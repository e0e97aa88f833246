package filter

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

func utf16Bytes(s string, bigEndian bool) []byte {
	out := []byte{0xff, 0xfe}
	if bigEndian {
		out = []byte{0xfe, 0xff}
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

func TestDecodeText(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
		err  bool
	}{
		{[]byte("plain\n"), "plain\n", false},
		{[]byte("\xef\xbb\xbfbom\n"), "bom\n", false},
		{utf16Bytes("top\nüñ😀\n", false), "top\nüñ😀\n", false},
		{utf16Bytes("top\nüñ😀\n", true), "top\nüñ😀\n", false},
		{[]byte{0xff, 0xfe, 'a'}, "", true},
		{[]byte("\xff\xffnot a bom"), "\xff\xffnot a bom", false},
	}
	for _, tc := range tests {
		got, err := DecodeText(tc.in)
		if tc.err != (err != nil) || (!tc.err && string(got) != tc.want) {
			t.Errorf("DecodeText(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	t.Setenv("CAIRN_X", "val")
	t.Setenv("CAIRN_EMPTY", "")
	tests := map[string]string{
		"/home/$CAIRN_X/foo":  "/home/val/foo",
		"${CAIRN_X}bar":       "valbar",
		"$$CAIRN_X":           "$CAIRN_X",
		"a$$":                 "a$",
		"$CAIRN_UNSET_XYZ/x":  "/x",
		"$CAIRN_EMPTY/x":      "/x",
		"no dollar":           "no dollar",
		"trailing $":          "trailing $",
		"$$$$":                "$$",
		"cost $$5 and $$$$10": "cost $5 and $$10",
	}
	for in, want := range tests {
		if got := ExpandEnv(in); got != want {
			t.Errorf("ExpandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseExcludeFile(t *testing.T) {
	t.Setenv("CAIRN_USER", "bob")
	// restic doc example plus white space, CRLF and expansion.
	in := "# exclude go-files\n*.go\n# exclude foo/x/y/z/bar foo/x/bar foo/bar\nfoo/**/bar\n\n   \n  spaced name  \r\n/home/$CAIRN_USER/foo\n$$literal\n  # indented comment\n!negated\nlast"
	got, err := ParseExcludeFile([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"*.go", "foo/**/bar", "spaced name", "/home/bob/foo", "$literal", "!negated", "last"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	got, err = ParseExcludeFile(utf16Bytes("a\r\nb\r\n", false))
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("UTF-16: %q %v", got, err)
	}
	if _, err := ParseExcludeFile([]byte{0xfe, 0xff, 0}); err == nil {
		t.Fatal("broken UTF-16 accepted")
	}
}

func TestParseFileList(t *testing.T) {
	t.Setenv("CAIRN_V", "top")
	tests := []struct {
		kind ListKind
		in   string
		want []string
		err  string
	}{
		{FilesFrom, "# c\n\n  t/top  \nt/x/*.go\nt/$CAIRN_V\r\n", []string{"t/top", "t/x/*.go", "t/$CAIRN_V"}, ""},
		{FilesFrom, "", nil, ""},
		{FilesFromVerbatim, " t/top \n\n#t/x/h\r\nlast", []string{" t/top ", "#t/x/h", "last"}, ""},
		{FilesFromRaw, "t/top\x00t/x/h\x00", []string{"t/top", "t/x/h"}, ""},
		{FilesFromRaw, "new\nline\x00\xff\xfe\x00", []string{"new\nline", "\xff\xfe"}, ""},
		{FilesFromRaw, "", nil, ""},
		{FilesFromRaw, "t/top\x00t/x/h", nil, "trailing zero byte missing"},
		{FilesFromRaw, "t/top\x00\x00t/x/h\x00", nil, "empty filename in listing"},
		{FilesFromRaw, "\x00", nil, "empty filename in listing"},
		{ListKind(9), "x", nil, "unknown kind"},
	}
	for _, tc := range tests {
		got, err := ParseFileList([]byte(tc.in), tc.kind)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %q: error %v, want %q", tc.kind, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v %q = %q, %v; want %q", tc.kind, tc.in, got, err, tc.want)
		}
	}
	got, err := ParseFileList(utf16Bytes("a\nb\n", true), FilesFromVerbatim)
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("verbatim UTF-16: %q %v", got, err)
	}
	if FilesFrom.String() != "--files-from" || FilesFromRaw.String() != "--files-from-raw" || FilesFromVerbatim.String() != "--files-from-verbatim" || ListKind(7).String() != "ListKind(7)" {
		t.Fatal("ListKind.String")
	}
}

func TestReadListsAndGlobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, f := range []string{"a.go", "b.go", "c.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list := filepath.Join(dir, "list")
	if err := os.WriteFile(list, []byte(filepath.Join(dir, "*.go")+"\n"+filepath.Join(dir, "none*")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pats, err := ReadFileList(ctx, list, FilesFrom, nil)
	if err != nil {
		t.Fatal(err)
	}
	paths, unmatched, err := ExpandGlobs(pats)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(paths, []string{filepath.Join(dir, "a.go"), filepath.Join(dir, "b.go")}) ||
		!reflect.DeepEqual(unmatched, []string{filepath.Join(dir, "none*")}) {
		t.Fatalf("globs: %q %q", paths, unmatched)
	}
	if _, _, err := ExpandGlobs([]string{"["}); err == nil {
		t.Fatal("bad glob accepted")
	}

	got, err := ReadFileList(ctx, "-", FilesFromRaw, strings.NewReader("x\x00y\x00"))
	if err != nil || !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Fatalf("stdin: %q %v", got, err)
	}
	if _, err := ReadFileList(ctx, "-", FilesFrom, nil); err == nil {
		t.Fatal("stdin without reader accepted")
	}
	if _, err := ReadFileList(ctx, filepath.Join(dir, "missing"), FilesFrom, nil); err == nil || !strings.Contains(err.Error(), "--files-from") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadFileList(ctx, list, FilesFromRaw, nil); err == nil {
		t.Fatal("raw list without NUL accepted")
	}

	ex := filepath.Join(dir, "excludes")
	if err := os.WriteFile(ex, []byte("# c\n*.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pl, err := ReadExcludeFile(ctx, ex)
	if err != nil || !reflect.DeepEqual(pl, []string{"*.txt"}) {
		t.Fatalf("exclude file: %q %v", pl, err)
	}
	if _, err := ReadExcludeFile(ctx, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing exclude file accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReadExcludeFile(cctx, ex); err == nil {
		t.Fatal("cancelled context ignored")
	}
}

// FuzzParseFileList: the list decoders never panic, and raw lists round
// trip.
func FuzzParseFileList(f *testing.F) {
	f.Add([]byte("a\x00b\x00"), uint8(2))
	f.Add([]byte("# c\n x \r\n"), uint8(0))
	f.Add([]byte{0xff, 0xfe, 'a', 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		k := ListKind(kind % 3)
		got, err := ParseFileList(data, k)
		if err != nil {
			return
		}
		if k == FilesFromRaw {
			var back []byte
			for _, s := range got {
				back = append(back, s...)
				back = append(back, 0)
			}
			if string(back) != string(data) {
				t.Fatalf("raw round trip: %q -> %q -> %q", data, got, back)
			}
		}
		if _, err := ParseExcludeFile(data); err != nil && k != FilesFromRaw {
			t.Fatalf("exclude parse failed where the list parse did not: %v", err)
		}
	})
}
