package sftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

func handleFor(t core.FileType, data []byte) backend.Handle {
	sum := sha256.Sum256(data)
	return backend.Handle{Type: t, Name: hex.EncodeToString(sum[:])}
}

var repoCounter atomic.Int64

// serverConfig returns a config for a new repository directory on srv.
func serverConfig(srv *servers.SSHServer) Config {
	return Config{
		User:            srv.User,
		Host:            srv.Host,
		Port:            srv.Port,
		Path:            filepath.Join(srv.Dir, fmt.Sprintf("repo%d", repoCounter.Add(1))),
		KnownHostsFiles: []string{srv.KnownHosts},
		KeyFiles:        []string{srv.ClientKey},
		NoAgent:         true,
		Connections:     DefaultConnections,
	}
}

func createBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := servers.StartSSHD(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return createBackend(t, serverConfig(srv))
	})
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		in         string
		user, host string
		port       int
		path       string
	}{
		{"sftp:user@host:/srv/repo", "user", "host", 0, "/srv/repo"},
		{"sftp:host:repo", "", "host", 0, "repo"},
		{"sftp:user@host:repo/sub/", "user", "host", 0, "repo/sub"},
		{"sftp:u@[::1]:/srv/r", "u", "::1", 0, "/srv/r"},
		{"sftp:host:/a@b", "", "host", 0, "/a@b"},
		{"sftp://user@host:2222//srv/repo", "user", "host", 2222, "/srv/repo"},
		{"sftp://host/rel/repo", "", "host", 0, "rel/repo"},
		{"sftp://u@[::1]:22//x", "u", "::1", 22, "/x"},
	}
	for _, c := range cases {
		cfg, err := ParseConfig(c.in)
		if err != nil {
			t.Errorf("ParseConfig(%q): %v", c.in, err)
			continue
		}
		if cfg.User != c.user || cfg.Host != c.host || cfg.Port != c.port || cfg.Path != c.path {
			t.Errorf("ParseConfig(%q) = %+v", c.in, cfg)
		}
		if cfg.Connections != DefaultConnections {
			t.Errorf("ParseConfig(%q): connections %d", c.in, cfg.Connections)
		}
	}
	for _, bad := range []string{
		"sftp:", "sftp:host", "sftp:host:", "sftp:@host:/x", "sftp:host:/", "sftp://host/", "sftp://host",
		"sftp://u:pw@host//x", "sftp://host:99999//x", "sftp://host//x?y", "sftp:[::1/x", "sftp:[::1]/x",
	} {
		if cfg, err := ParseConfig(bad); err == nil {
			t.Errorf("ParseConfig(%q) = %+v, want an error", bad, cfg)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseConfig(%q): error shows the password: %v", bad, err)
		}
	}
	cfg, _ := ParseConfig("sftp://u@h:2222//srv/r")
	if loc := cfg.location("u"); loc != "sftp://u@h:2222//srv/r" {
		t.Errorf("location %q", loc)
	}
	cfg, _ = ParseConfig("sftp:h:rel")
	if loc := cfg.location("me"); loc != "sftp:me@h:rel" {
		t.Errorf("location %q", loc)
	}
}

// TestLayoutAndDurability checks the files on the server's disk: the
// standard layout, read-only files, no temporary files left behind.
func TestLayoutAndDurability(t *testing.T) {
	srv := servers.StartSSHD(t)
	ctx := context.Background()
	cfg := serverConfig(srv)
	b := createBackend(t, cfg)
	defer b.Close()
	s, err := b.session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.hardlink || !s.fsync {
		t.Errorf("OpenSSH announces hardlink and fsync extensions: hardlink %v fsync %v", s.hardlink, s.fsync)
	}
	for _, d := range backend.Dirs() {
		if fi, err := os.Stat(filepath.Join(cfg.Path, d)); err != nil || !fi.IsDir() {
			t.Fatalf("Create did not make %s: %v", d, err)
		}
	}
	// Save into a data/xx directory that went missing.
	data := []byte("layout pack")
	h := handleFor(core.PackFile, data)
	if err := os.Remove(filepath.Join(cfg.Path, "data", h.Name[:2])); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	cfgH := backend.Handle{Type: core.ConfigFile}
	if err := b.Save(ctx, cfgH, backend.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{backend.Path(h), "config"} {
		fi, err := os.Stat(filepath.Join(cfg.Path, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s is writable: %v", p, fi.Mode())
		}
	}
	if b.noDirSync.Load() {
		t.Error("fsync of a directory failed against OpenSSH")
	}
	// Failed saves leave nothing behind.
	if err := b.Save(ctx, handleFor(core.IndexFile, data), &shortReader{backend.NewByteReader(data)}); err == nil {
		t.Fatal("Save of a reader shorter than its length succeeded")
	}
	filepath.WalkDir(cfg.Path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
	// Stray entries are not listed.
	id := handleFor(core.PackFile, []byte("stray")).Name
	for _, p := range []string{"data/" + id, "data/zz/" + id, "index/" + id + tempMarker + "abc", "keys/README"} {
		full := filepath.Join(cfg.Path, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o700)
		if err := os.WriteFile(full, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(cfg.Path, "snapshots", id), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ft := range core.AllFileTypes {
		var got []string
		if err := b.List(ctx, ft, func(fi backend.FileInfo) error { got = append(got, fi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		want := 0
		if ft == core.PackFile {
			want = 1
		}
		if len(got) != want {
			t.Errorf("List %v: %v", ft, got)
		}
	}
	// A type directory that cannot be read is an error, not empty (H24).
	if os.Geteuid() != 0 { // root reads anything
		if err := os.Chmod(filepath.Join(cfg.Path, "index"), 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(filepath.Join(cfg.Path, "index"), 0o700)
		if err := b.List(ctx, core.IndexFile, func(backend.FileInfo) error { return nil }); err == nil {
			t.Error("List of an unreadable directory succeeded")
		}
	}
	if err := os.RemoveAll(filepath.Join(cfg.Path, "locks")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Path, "locks"), []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.List(ctx, core.LockFile, func(backend.FileInfo) error { return nil }); err == nil {
		t.Error("List of a type \"directory\" that is a file succeeded")
	}
}

type shortReader struct{ *backend.ByteReader }

func (r *shortReader) Length() int64 { return r.ByteReader.Length() + 1 }

func TestPublishWithoutHardlink(t *testing.T) {
	srv := servers.StartSSHD(t)
	ctx := context.Background()
	b := createBackend(t, serverConfig(srv))
	defer b.Close()
	s, err := b.session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.hardlink = false // as with a server without hardlink@openssh.com
	data := []byte("renamed")
	h := handleFor(core.SnapshotFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	// Racing writer past the existence check: the plain rename refuses.
	tmp := b.filename(h) + tempMarker + "race"
	f, err := s.sftp.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("other"))
	f.Close()
	if err := b.publish(s, tmp, b.filename(h)); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Fatalf("publish over an existing file: %v, want ErrAlreadyExists", err)
	}
	got, err := backend.LoadAll(ctx, b, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file changed: %q %v", got, err)
	}
	s.hardlink = true
	if err := b.publish(s, tmp, b.filename(h)); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Fatalf("publish by link over an existing file: %v, want ErrAlreadyExists", err)
	}
}

// TestHostKeyChecking: an unknown or changed host key and a missing
// known_hosts file are errors; so is a key the server does not accept.
func TestHostKeyChecking(t *testing.T) {
	srv := servers.StartSSHD(t)
	ctx := context.Background()
	dir := t.TempDir()

	empty := filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := servers.StartSSHD(t) // same address form, other port and key
	wrong := filepath.Join(dir, "wrong_known_hosts")
	line, err := os.ReadFile(other.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	// other's key, listed under srv's address
	fixed := strings.Replace(string(line), fmt.Sprintf("[127.0.0.1]:%d", other.Port), fmt.Sprintf("[127.0.0.1]:%d", srv.Port), 1)
	if err := os.WriteFile(wrong, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		files []string
		want  string
	}{
		"unknown":  {[]string{empty}, "unknown"},
		"mismatch": {[]string{wrong}, "MISMATCH"},
		"missing":  {[]string{filepath.Join(dir, "nope")}, "known_hosts"},
	} {
		cfg := serverConfig(srv)
		cfg.KnownHostsFiles = c.files
		_, err := Create(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Create: %v, want an error mentioning %q", name, err, c.want)
		}
		if _, serr := os.Stat(cfg.Path); serr == nil {
			t.Errorf("%s: the repository directory was created despite the host key failure", name)
		}
	}
	// HOME without known_hosts and no explicit file: refused.
	t.Setenv("HOME", dir)
	cfg := serverConfig(srv)
	cfg.KnownHostsFiles = nil
	if _, err := Create(ctx, cfg); err == nil {
		t.Error("Create without any known_hosts entry succeeded")
	}
	// The other server's client key is not authorized here.
	cfg = serverConfig(srv)
	cfg.KeyFiles = []string{other.ClientKey}
	if _, err := Create(ctx, cfg); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("Create with an unauthorized key: %v", err)
	}
	// Default key files: the client key as ~/.ssh/id_ed25519.
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	key, _ := os.ReadFile(srv.ClientKey)
	kh, _ := os.ReadFile(srv.KnownHosts)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), key, 0o600)
	os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), kh, 0o600)
	cfg = serverConfig(srv)
	cfg.KnownHostsFiles, cfg.KeyFiles = nil, nil
	b, err := Create(ctx, cfg)
	if err != nil {
		t.Fatalf("Create with ~/.ssh/id_ed25519 and ~/.ssh/known_hosts: %v", err)
	}
	b.Close()
}

func TestOpenMissing(t *testing.T) {
	srv := servers.StartSSHD(t)
	_, err := Open(context.Background(), serverConfig(srv))
	if !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Open of a missing directory: %v, want ErrNotExist", err)
	}
}

// TestReconnect: a connection that dies is replaced on the next request.
func TestReconnect(t *testing.T) {
	srv := servers.StartSSHD(t)
	ctx := context.Background()
	b := createBackend(t, serverConfig(srv))
	defer b.Close()
	data := []byte("survives reconnects")
	h := handleFor(core.KeyFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		s, _ := b.session(ctx)
		s.ssh.Close()
		<-s.done
		got, err := backend.LoadAll(ctx, b, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load after the connection died: %q %v", got, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, h); err == nil {
		t.Fatal("Stat after Close succeeded")
	}
}

// TestStall: a server that stops answering (a frozen proxy in between)
// fails the requests stuck on it once keepalives go unanswered (H30).
func TestStall(t *testing.T) {
	srv := servers.StartSSHD(t)
	p := newFreezingProxy(t, srv.Addr())
	ctx := context.Background()
	cfg := serverConfig(srv)
	cfg.Port = p.port()
	cfg.StallTimeout = 500 * time.Millisecond
	// known_hosts lists the server under its own port.
	kh, _ := os.ReadFile(srv.KnownHosts)
	khFile := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(khFile, bytes.Replace(kh, []byte(fmt.Sprintf("]:%d ", srv.Port)), []byte(fmt.Sprintf("]:%d ", p.port())), 1), 0o600)
	cfg.KnownHostsFiles = []string{khFile}
	b := createBackend(t, cfg)
	defer b.Close()
	data := []byte("before the freeze")
	h := handleFor(core.IndexFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	p.freeze()
	done := make(chan error, 1)
	go func() {
		_, err := b.Stat(ctx, h)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Stat through a frozen connection succeeded")
		}
	case <-time.After(time.Minute):
		t.Fatal("Stat through a frozen connection hung despite keepalives")
	}
}

// freezingProxy forwards TCP connections until frozen; then it stops
// forwarding (without closing) until the test ends.
type freezingProxy struct {
	l      net.Listener
	frozen chan struct{}
	once   sync.Once
	stop   chan struct{}
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{l: l, frozen: make(chan struct{}), stop: make(chan struct{})}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		close(p.stop)
		l.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Add(2)
			go p.pipe(&conns, c, u)
			go p.pipe(&conns, u, c)
		}
	}()
	return p
}

func (p *freezingProxy) pipe(wg *sync.WaitGroup, dst, src net.Conn) {
	defer wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			<-p.stop
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezingProxy) freeze()   { p.once.Do(func() { close(p.frozen) }) }
func (p *freezingProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"sftp:user@host:/srv/repo", "sftp://u@[::1]:22//x", "sftp:host:rel", "sftp:[::1]:x", "sftp://h/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseConfig(s)
		if err != nil {
			return
		}
		if cfg.Host == "" || cfg.Path == "" || cfg.Path == "/" || cfg.Path == "." || cfg.Port < 0 || cfg.Port > 65535 {
			t.Fatalf("ParseConfig(%q) = %+v", s, cfg)
		}
		_ = cfg.location("u")
		_ = io.Discard
	})
}
