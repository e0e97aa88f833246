package servers

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// assertClosed checks that nothing listens on addr any more.
func assertClosed(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
		t.Errorf("%s still accepts connections after the test that started the server ended", addr)
	}
}

func TestS3StartStop(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		s := StartS3(t)
		addr = s.Endpoint
		// An anonymous request is refused by a real S3 server.
		resp, err := http.Get(s.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("anonymous GET /: %s, want 403", resp.Status)
		}
		if len(s.AccessKey) < 16 || len(s.SecretKey) < 32 {
			t.Fatalf("weak credentials %q %q", s.AccessKey, s.SecretKey)
		}
		for _, kv := range s.Env() {
			if !strings.HasPrefix(kv, "AWS_") {
				t.Errorf("Env: %q", kv)
			}
		}
	})
	if addr != "" {
		assertClosed(t, addr)
	}
}

func TestSSHDStartStop(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		s := StartSSHD(t)
		addr = s.Addr()
		keyPEM, err := os.ReadFile(s.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.ParsePrivateKey(keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		hostCB, err := knownhosts.New(s.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &ssh.ClientConfig{
			User:            s.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: hostCB,
			Timeout:         10 * time.Second,
		}
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("ssh with the generated client key: %v", err)
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.RequestSubsystem("sftp"); err != nil {
			t.Fatalf("sftp subsystem: %v", err)
		}
		sess.Close()
		// This connection stays open: stopping the server must not wait
		// for it (its per-connection sshd leaves the process group).
		kept := c
		t.Cleanup(func() { kept.Close() })

		// Another key is refused.
		_, otherKey := writeKey(t, t.TempDir(), "other")
		otherPEM, _ := os.ReadFile(otherKey)
		other, err := ssh.ParsePrivateKey(otherPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(other)}
		if c, err := ssh.Dial("tcp", addr, cfg); err == nil {
			c.Close()
			t.Fatal("sshd accepted a key that is not in authorized_keys")
		}
		// A client expecting another host key refuses the server.
		wrong := filepath.Join(t.TempDir(), "known_hosts")
		pub, _ := writeKey(t, t.TempDir(), "fake_host")
		if err := os.WriteFile(wrong, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, pub)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		wrongCB, err := knownhosts.New(wrong)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
		cfg.HostKeyCallback = wrongCB
		c, err = ssh.Dial("tcp", addr, cfg)
		var ke *knownhosts.KeyError
		if err == nil {
			c.Close()
			t.Fatal("host key mismatch not detected")
		} else if !errors.As(err, &ke) || len(ke.Want) == 0 {
			t.Fatalf("host key mismatch: %v", err)
		}
		if args := s.SSHArgs(); args[len(args)-1] != s.User+"@127.0.0.1" {
			t.Errorf("SSHArgs: %v", args)
		}
	})
	if addr != "" {
		assertClosed(t, addr)
	}
}
