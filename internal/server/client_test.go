package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/backend/rest"
	"github.com/cairn-backup/cairn/internal/core"
)

func restConfig(t testing.TB, url string) rest.Config {
	t.Helper()
	cfg, err := rest.ParseConfig("rest:" + url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// TestRESTConformanceDir runs the backend conformance suite against the
// REST client talking to the server over loopback TCP, on real
// directories. The suite saves objects whose content is not their hash
// (to race writers of different data), so upload verification is off here;
// TestRESTVerifiedUploads covers it.
func TestRESTConformanceDir(t *testing.T) {
	e := newEnv(t, Config{NoVerifyUpload: true})
	var n atomic.Int32
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := rest.Create(context.Background(), restConfig(t, fmt.Sprintf("%s/r%d/", e.srv.URL, n.Add(1))))
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
	// Nothing but complete files remains: no temporary files.
	for _, f := range regularFiles(t, e.root) {
		base := filepath.Base(f)
		if !core.IsValidName(base) && base != "config" {
			t.Errorf("stray file %s", f)
		}
	}
}

func TestRESTConformanceMem(t *testing.T) {
	store := newMemStore()
	h, err := New(context.Background(), store, Config{NoAuth: true, NoVerifyUpload: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var n atomic.Int32
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := rest.Create(context.Background(), restConfig(t, fmt.Sprintf("%s/m%d/", srv.URL, n.Add(1))))
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

func TestRESTVerifiedUploads(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	be, err := rest.Create(ctx, restConfig(t, e.srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	// Creating again is refused once a config exists.
	if err := be.Save(ctx, backend.Handle{Type: core.ConfigFile}, backend.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	if _, err := rest.Create(ctx, restConfig(t, e.srv.URL+"/")); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Errorf("second Create: %v", err)
	}
	data := randomBytes(t, 50_000)
	good := backend.Handle{Type: core.PackFile, Name: hashName(data)}
	bad := backend.Handle{Type: core.PackFile, Name: hashName(append(data, 0))}
	err = be.Save(ctx, bad, backend.NewByteReader(data))
	var se *rest.StatusError
	if !errors.As(err, &se) || se.StatusCode != 400 || isPermanent(err) {
		t.Errorf("mismatched upload: %v", err)
	}
	if _, err := be.Stat(ctx, bad); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("mismatched upload stored: %v", err)
	}
	if err := be.Save(ctx, good, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	err = be.Save(ctx, good, backend.NewByteReader(data))
	if !errors.Is(err, backend.ErrAlreadyExists) || !isPermanent(err) {
		t.Errorf("second upload: %v", err)
	}
	got, err := backend.LoadAll(ctx, be, good)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("load: %v", err)
	}
}

func TestRESTAuthAndModes(t *testing.T) {
	dir := t.TempDir()
	htp := filepath.Join(dir, "htpasswd")
	writeFile(t, htp, "alice:"+bcryptHash(t, "pw")+"\n")
	e := newEnv(t, Config{HtpasswdFile: htp, AppendOnly: true, PrivateRepos: true})
	ctx := context.Background()
	u := e.srv.URL[len("http://"):]

	_, err := rest.Create(ctx, restConfig(t, "http://alice:wrong@"+u+"/alice/"))
	var se *rest.StatusError
	if !errors.As(err, &se) || se.StatusCode != 401 || !isPermanent(err) {
		t.Fatalf("wrong password: %v", err)
	}
	t.Setenv("RESTIC_REST_USERNAME", "alice")
	t.Setenv("RESTIC_REST_PASSWORD", "pw")
	be, err := rest.Create(ctx, restConfig(t, "http://"+u+"/alice/"))
	if err != nil {
		t.Fatalf("credentials from the environment: %v", err)
	}
	defer be.Close()
	if _, err := rest.Create(ctx, restConfig(t, "http://"+u+"/bob/")); !isPermanent(err) {
		t.Errorf("other user's repository: %v", err)
	}
	data := []byte("snapshot")
	snap := backend.Handle{Type: core.SnapshotFile, Name: hashName(data)}
	lock := backend.Handle{Type: core.LockFile, Name: hashName(data)}
	for _, h := range []backend.Handle{snap, lock} {
		if err := be.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	err = be.Remove(ctx, snap)
	if !errors.As(err, &se) || se.StatusCode != 403 || !isPermanent(err) || errors.Is(err, backend.ErrAlreadyExists) {
		t.Errorf("append-only remove: %v", err)
	}
	if err := be.Remove(ctx, lock); err != nil {
		t.Errorf("append-only lock remove: %v", err)
	}
}

func TestRESTQuota(t *testing.T) {
	root := t.TempDir()
	h, err := New(context.Background(), NewDirStore(root), Config{NoAuth: true, MaxSize: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx := context.Background()
	be, err := rest.Create(ctx, restConfig(t, srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	data := randomBytes(t, 100_001)
	err = be.Save(ctx, backend.Handle{Type: core.PackFile, Name: hashName(data)}, backend.NewByteReader(data))
	if !errors.Is(err, backend.ErrNoSpace) || !isPermanent(err) {
		t.Errorf("over quota: %v", err)
	}
}

// TestRESTConnectionReuse: thousands of small requests through the client
// use no more connections than its limit (plus slack), so nothing piles up
// in TIME_WAIT (hazard H29).
func TestRESTConnectionReuse(t *testing.T) {
	h, err := New(context.Background(), newMemStore(), Config{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	var newConns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ctx := context.Background()
	const conns = 5
	cfg := restConfig(t, srv.URL+"/")
	cfg.Connections = conns
	be, err := rest.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	const total = 2000
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += workers {
				data := []byte(fmt.Sprintf("object %d", i))
				hd := backend.Handle{Type: core.IndexFile, Name: hashName(data)}
				if err := be.Save(ctx, hd, backend.NewByteReader(data)); err != nil {
					errs <- err
					return
				}
				err := be.Load(ctx, hd, 3, 2, func(rd io.Reader) error {
					b, err := io.ReadAll(rd)
					if err == nil && !bytes.Equal(b, data[2:5]) {
						err = errors.New("wrong data")
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				// A missing file: an error response, also drained.
				if i%10 != 0 {
					continue
				}
				if _, err := be.Stat(ctx, backend.Handle{Type: core.KeyFile, Name: hd.Name}); !errors.Is(err, backend.ErrNotExist) {
					errs <- fmt.Errorf("stat missing: %v", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := newConns.Load(); n > conns+2 {
		t.Errorf("%d TCP connections for %d requests, limit %d", n, 2*total+total/10, conns)
	}
}

// ---- TLS ----

type certKey struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

func makeCert(t *testing.T, cn string, isCA bool, parent *certKey, usage x509.ExtKeyUsage) *certKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

func writePEM(t *testing.T, dir, name string, parts ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveTLS runs Serve with TLS on a loopback listener and returns the
// base URL and a pointer to the last request's protocol major version.
func serveTLS(t *testing.T, scfg ServeConfig) (string, *atomic.Int32) {
	t.Helper()
	h, err := New(context.Background(), newMemStore(), Config{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	var proto atomic.Int32
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, wrapped, scfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String(), &proto
}

func TestRESTTLS(t *testing.T) {
	dir := t.TempDir()
	ca := makeCert(t, "test CA", true, nil, 0)
	srvCert := makeCert(t, "server", false, ca, x509.ExtKeyUsageServerAuth)
	caFile := writePEM(t, dir, "ca.pem", ca.certPEM)
	certFile := writePEM(t, dir, "server.pem", srvCert.certPEM)
	keyFile := writePEM(t, dir, "server.key", srvCert.keyPEM)

	url, proto := serveTLS(t, ServeConfig{TLSCertFile: certFile, TLSKeyFile: keyFile})
	ctx := context.Background()

	// Without the CA the server is not trusted.
	if _, err := rest.Create(ctx, restConfig(t, url+"/")); err == nil {
		t.Fatal("untrusted server accepted")
	}
	cfg := restConfig(t, url+"/")
	cfg.CACert = caFile
	be, err := rest.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	data := randomBytes(t, 100_000)
	hd := backend.Handle{Type: core.PackFile, Name: hashName(data)}
	if err := be.Save(ctx, hd, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := backend.LoadAll(ctx, be, hd)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("load over TLS: %v", err)
	}
	if proto.Load() != 2 {
		t.Errorf("HTTP/%d over TLS, want HTTP/2", proto.Load())
	}
	// A CA file without certificates is an error at Open.
	cfg.CACert = keyFile
	if _, err := rest.Open(ctx, cfg); err == nil {
		t.Error("CA file without certificates accepted")
	}
}

func TestRESTClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := makeCert(t, "test CA", true, nil, 0)
	srvCert := makeCert(t, "server", false, ca, x509.ExtKeyUsageServerAuth)
	cliCert := makeCert(t, "client", false, ca, x509.ExtKeyUsageClientAuth)
	otherCA := makeCert(t, "other CA", true, nil, 0)
	strangerCert := makeCert(t, "stranger", false, otherCA, x509.ExtKeyUsageClientAuth)
	caFile := writePEM(t, dir, "ca.pem", ca.certPEM)

	url, _ := serveTLS(t, ServeConfig{
		TLSCertFile:     writePEM(t, dir, "server.pem", srvCert.certPEM),
		TLSKeyFile:      writePEM(t, dir, "server.key", srvCert.keyPEM),
		TLSClientCAFile: caFile,
	})
	ctx := context.Background()
	cfg := restConfig(t, url+"/")
	cfg.CACert = caFile
	if _, err := rest.Create(ctx, cfg); err == nil {
		t.Fatal("no client certificate accepted")
	}
	cfg.TLSClientCert = writePEM(t, dir, "stranger.pem", strangerCert.certPEM, strangerCert.keyPEM)
	if _, err := rest.Create(ctx, cfg); err == nil {
		t.Fatal("client certificate from another CA accepted")
	}
	cfg.TLSClientCert = writePEM(t, dir, "client.pem", cliCert.certPEM, cliCert.keyPEM)
	be, err := rest.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("with client certificate: %v", err)
	}
	be.Close()
}

func TestServeConfigErrors(t *testing.T) {
	for _, c := range []ServeConfig{
		{TLSCertFile: "x"},
		{TLSKeyFile: "x"},
		{TLSClientCAFile: "x"},
		{TLSCertFile: "/nonexistent", TLSKeyFile: "/nonexistent"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := Serve(context.Background(), ln, http.NotFoundHandler(), c); err == nil {
			t.Errorf("Serve with %+v succeeded", c)
		}
	}
}
