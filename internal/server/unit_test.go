package server

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-backup/cairn/internal/core"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParsePath(t *testing.T) {
	type want struct {
		ok     bool
		kind   routeKind
		folder string
		ftype  core.FileType
		name   string
	}
	cases := map[string]want{
		"/":                     {true, routeRepo, "", 0, ""},
		"/a/":                   {true, routeRepo, "a", 0, ""},
		"/a/b/":                 {true, routeRepo, "a/b", 0, ""},
		"/a/b/c/":               {ok: false},
		"/config":               {true, routeConfig, "", core.ConfigFile, ""},
		"/a/config":             {true, routeConfig, "a", core.ConfigFile, ""},
		"/a/b/config":           {true, routeConfig, "a/b", core.ConfigFile, ""},
		"/a/b/c/config":         {ok: false},
		"/data/":                {true, routeList, "", core.PackFile, ""},
		"/u@x.org/keys/":        {true, routeList, "u@x.org", core.KeyFile, ""},
		"/a/b/snapshots/":       {true, routeList, "a/b", core.SnapshotFile, ""},
		"/data":                 {ok: false},
		"/a":                    {ok: false},
		"/data/" + testID:       {true, routeObject, "", core.PackFile, testID},
		"/a/locks/" + testID:    {true, routeObject, "a", core.LockFile, testID},
		"/a/b/index/" + testID:  {true, routeObject, "a/b", core.IndexFile, testID},
		"/data/00/" + testID:    {ok: false},
		"/data/" + testID + "/": {ok: false},
		"/data/" + testID[:63]:  {ok: false},
		"/data/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef": {ok: false},
		"/config/":               {ok: false},
		"/foo/":                  {true, routeRepo, "foo", 0, ""},
		"/a/foo":                 {ok: false},
		"":                       {ok: false},
		"*":                      {ok: false},
		"config":                 {ok: false},
		"//config":               {ok: false},
		"/a//config":             {ok: false},
		"/../config":             {ok: false},
		"/./config":              {ok: false},
		"/a/../config":           {ok: false},
		"/%2e%2e/config":         {ok: false},
		"/%2E%2E/config":         {ok: false},
		"/%2e/config":            {ok: false},
		"/..%2fconfig":           {ok: false},
		"/a%2Fb/config":          {ok: false},
		"/a%2fb/config":          {ok: false},
		"/a%5Cb/config":          {ok: false},
		"/a%00/config":           {ok: false},
		"/%00/config":            {ok: false},
		"/.htpasswd/config":      {ok: false},
		"/.hidden/config":        {ok: false},
		"/a%zz/config":           {ok: false},
		"/a b/config":            {ok: false},
		"/a%20b/config":          {ok: false},
		"/%61/config":            {true, routeConfig, "a", core.ConfigFile, ""},
		"/d%C3%A9j%C3%A0/config": {true, routeConfig, "déjà", core.ConfigFile, ""},
		"/%ff/config":            {ok: false},
		"/data%2f" + testID:      {ok: false},
	}
	for p, w := range cases {
		rt, ok := parsePath(p)
		if ok != w.ok {
			t.Errorf("parsePath(%q): ok=%v, want %v", p, ok, w.ok)
			continue
		}
		if !ok {
			continue
		}
		if rt.kind != w.kind || rt.repoPath() != w.folder || rt.ftype != w.ftype || rt.name != w.name {
			t.Errorf("parsePath(%q) = kind %v folder %q type %v name %q; want %v %q %v %q",
				p, rt.kind, rt.repoPath(), rt.ftype, rt.name, w.kind, w.folder, w.ftype, w.name)
		}
	}
}

func TestParseRange(t *testing.T) {
	type res struct {
		start, length int64
		partial, ok   bool
	}
	cases := []struct {
		h    string
		size int64
		want res
	}{
		{"", 100, res{0, 100, false, true}},
		{"bytes=0-", 100, res{0, 100, true, true}},
		{"bytes=10-", 100, res{10, 90, true, true}},
		{"bytes=10-19", 100, res{10, 10, true, true}},
		{"bytes=99-99", 100, res{99, 1, true, true}},
		{"bytes=90-200", 100, res{90, 10, true, true}},
		{"bytes=-10", 100, res{90, 10, true, true}},
		{"bytes=-1000", 100, res{0, 100, true, true}},
		{"bytes=100-", 100, res{ok: false}},
		{"bytes=100-100", 100, res{ok: false}},
		{"bytes=20-10", 100, res{ok: false}},
		{"bytes=-0", 100, res{ok: false}},
		{"bytes=0-", 0, res{0, 0, false, true}},
		{"bytes=0-0", 0, res{ok: false}},
		{"bytes=-5", 0, res{0, 0, false, true}},
		{"bytes=1-2,5-6", 100, res{ok: false}},
		{"bytes=+1-2", 100, res{ok: false}},
		{"bytes=1--2", 100, res{ok: false}},
		{"bytes=a-b", 100, res{ok: false}},
		{"items=0-1", 100, res{ok: false}},
		{"bytes=99999999999999999999-", 100, res{ok: false}},
		{"bytes=5", 100, res{ok: false}},
	}
	for _, c := range cases {
		s, l, p, ok := parseRange(c.h, c.size)
		got := res{s, l, p, ok}
		if !ok {
			got = res{ok: false}
		}
		if got != c.want {
			t.Errorf("parseRange(%q, %d) = %+v, want %+v", c.h, c.size, got, c.want)
		}
	}
}

func hashName(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestVerifyReader(t *testing.T) {
	data := bytes.Repeat([]byte("cairn"), 10_000)
	name := hashName(data)

	read := func(rd io.Reader) ([]byte, error) { return io.ReadAll(rd) }

	// Good body, read in small pieces.
	v, err := newVerifyReader(iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Rewind(); err != nil {
		t.Fatalf("Rewind before reading: %v", err)
	}
	got, err := read(v)
	if err != nil || !bytes.Equal(got, data) || !v.complete() {
		t.Fatalf("good body: err %v, %d bytes, complete %v", err, len(got), v.complete())
	}
	if err := v.Rewind(); !errors.Is(err, errRewind) {
		t.Fatalf("Rewind after reading: %v", err)
	}

	cases := []struct {
		desc   string
		body   []byte
		length int64
		name   string
		want   error
	}{
		{"truncated", data[:len(data)-1], int64(len(data)), name, errTruncated},
		{"empty", nil, int64(len(data)), name, errTruncated},
		{"corrupt", append([]byte{'X'}, data[1:]...), int64(len(data)), name, errHashMismatch},
		{"short length", data, int64(len(data)) - 1, name, errTooLong},
		{"short length, exact reads", data[:len(data)-1], int64(len(data)) - 1, name, errHashMismatch},
	}
	for _, c := range cases {
		v, err := newVerifyReader(bytes.NewReader(c.body), c.length, c.name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = read(v)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.desc, err, c.want)
		}
		if v.complete() {
			t.Errorf("%s: complete", c.desc)
		}
		// The error sticks.
		if _, err2 := v.Read(make([]byte, 10)); !errors.Is(err2, c.want) {
			t.Errorf("%s: second read: %v", c.desc, err2)
		}
	}

	// Without a name (config) only the length counts.
	v, _ = newVerifyReader(bytes.NewReader([]byte("abc")), 3, "")
	if b, err := read(v); err != nil || string(b) != "abc" || !v.complete() {
		t.Errorf("config body: %q %v", b, err)
	}
	v, _ = newVerifyReader(bytes.NewReader([]byte("ab")), 3, "")
	if _, err := read(v); !errors.Is(err, errTruncated) {
		t.Errorf("short config body: %v", err)
	}
	// A reader delivering more than announced in one read.
	v, _ = newVerifyReader(bytes.NewReader([]byte("abcd")), 3, "")
	buf := make([]byte, 2)
	n, err := v.Read(buf)
	if n != 2 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	if _, err := read(v); !errors.Is(err, errTooLong) {
		// The reader asks for one byte past the end and gets "cd".
		t.Errorf("overlong config body: %v", err)
	}
	// An overlong object body delivered in one read.
	v, _ = newVerifyReader(bytes.NewReader(append(append([]byte{}, data...), 'x')), int64(len(data)), name)
	if _, err := v.Read(make([]byte, len(data)+10)); !errors.Is(err, errTooLong) {
		t.Errorf("overlong object body: %v", err)
	}
	// Read errors from the body are reported as truncation.
	boom := errors.New("connection reset")
	v, _ = newVerifyReader(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(boom)), int64(len(data)), name)
	if _, err := read(v); !errors.Is(err, errTruncated) || !errors.Is(err, boom) {
		t.Errorf("failing body: %v", err)
	}
	if _, err := newVerifyReader(bytes.NewReader(nil), 0, "nothex"); err == nil {
		t.Error("invalid name accepted")
	}
	// An empty object.
	v, _ = newVerifyReader(bytes.NewReader(nil), 0, hashName(nil))
	if _, err := read(v); err != nil || !v.complete() {
		t.Errorf("empty object: %v", err)
	}
}

func TestQuotaReserve(t *testing.T) {
	q := &quota{max: 100, used: 40}
	if !q.reserve(60) {
		t.Fatal("reserve up to the limit refused")
	}
	if q.reserve(1) {
		t.Fatal("reserve past the limit accepted")
	}
	q.release(30)
	if q.usage() != 70 {
		t.Fatalf("usage %d, want 70", q.usage())
	}
	if q.reserve(-1) {
		t.Fatal("negative reservation accepted")
	}
	q.max = 1 << 62
	if q.reserve(1<<62 + 1<<61) {
		t.Fatal("overflowing reservation accepted")
	}
}

func bcryptHash(t testing.TB, pass string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func shaHash(pass string) string {
	s := sha1.Sum([]byte(pass))
	return "{SHA}" + base64.StdEncoding.EncodeToString(s[:])
}

func TestParseHtpasswd(t *testing.T) {
	bc := bcryptHash(t, "pw")
	b2b := "$2b$" + bc[4:]
	b2y := "$2y$" + bc[4:]
	data := "# comment\n\n" +
		"alice:" + bc + "\n" +
		"  bob:" + shaHash("secret") + "\r\n" +
		"carol:$apr1$abc$def\n" +
		"dave:plaintext\n" +
		"bad user:" + bc + "\n" +
		"noseparator\n" +
		"erin:" + b2b + "\n" +
		"frank:" + b2y + "\n" +
		"jürgen@x.org:" + bc + "\n"
	users := parseHtpasswd([]byte(data), slog.New(slog.DiscardHandler))
	want := []string{"alice", "bob", "erin", "frank", "jürgen@x.org"}
	if len(users) != len(want) {
		t.Errorf("got users %v, want %v", users, want)
	}
	for _, u := range want {
		if _, ok := users[u]; !ok {
			t.Errorf("user %q missing", u)
		}
	}
	if !checkHash(users["alice"], "pw") || checkHash(users["alice"], "pW") {
		t.Error("bcrypt $2a$ check wrong")
	}
	if !checkHash(users["erin"], "pw") || !checkHash(users["frank"], "pw") {
		t.Error("bcrypt $2b$/$2y$ check wrong")
	}
	if !checkHash(users["bob"], "secret") || checkHash(users["bob"], "secreT") {
		t.Error("{SHA} check wrong")
	}
}

func TestHtpasswdCacheExpires(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/htpasswd"
	writeFile(t, path, "alice:"+bcryptHash(t, "pw")+"\n")
	now := time.Unix(1_000_000, 0)
	h, err := newHtpasswd(path, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return now }
	if !h.verify("alice", "pw") {
		t.Fatal("valid credentials refused")
	}
	if len(h.cache) != 1 {
		t.Fatalf("cache has %d entries, want 1", len(h.cache))
	}
	if h.verify("alice", "wrong") {
		t.Fatal("wrong password accepted")
	}
	now = now.Add(2 * credCacheTTL)
	if !h.verify("alice", "pw") {
		t.Fatal("valid credentials refused after cache expiry")
	}
	// Remove alice from the loaded users: the cache must not outlive a
	// reload.
	writeFile(t, path, "bob:"+shaHash("x")+"\n")
	if err := h.reload(); err != nil {
		t.Fatal(err)
	}
	if h.verify("alice", "pw") {
		t.Fatal("removed user still accepted after reload")
	}
}
