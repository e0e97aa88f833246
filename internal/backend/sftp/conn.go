package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dialTimeout bounds connecting and the SSH handshake.
const dialTimeout = 30 * time.Second

// session is one SSH connection with its SFTP client.
type session struct {
	ssh  *ssh.Client
	sftp *pkgsftp.Client
	done chan struct{} // closed when the SSH connection has ended
	// extensions the server announced
	hardlink, fsync bool
	stopKeepalive   chan struct{}
	closeOnce       sync.Once
}

// alive reports whether the connection is still up.
func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *session) close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stopKeepalive)
		serr := s.sftp.Close()
		cerr := s.ssh.Close()
		if serr != nil && !errors.Is(serr, net.ErrClosed) {
			err = serr
		} else if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	})
	return err
}

// keepalive sends an SSH keepalive every interval and closes the
// connection when one is not answered within timeout, so that requests
// stuck on a dead or frozen server fail instead of hanging (hazard H30).
func (s *session) keepalive(interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopKeepalive:
			return
		case <-s.done:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			// The reply (even a failure reply) proves the server is alive.
			_, _, _ = s.ssh.SendRequest("keepalive@openssh.com", true, nil)
			close(answered)
		}()
		select {
		case <-answered:
		case <-s.stopKeepalive:
			return
		case <-time.After(timeout):
			_ = s.ssh.Close()
			return
		}
	}
}

// dial connects, authenticates and starts the SFTP subsystem.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	hostCB, algos, err := b.hostKeyCheck()
	if err != nil {
		return nil, err
	}
	signers, agentConn, err := b.signers()
	if err != nil {
		return nil, err
	}
	if agentConn != nil {
		// The agent signs during the handshake only.
		defer agentConn.Close()
	}
	if len(signers) == 0 {
		return nil, errors.New("no SSH keys: give a key file, start an ssh-agent, or create ~/.ssh/id_ed25519")
	}
	conf := &ssh.ClientConfig{
		User:              b.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hostCB,
		HostKeyAlgorithms: algos,
		Timeout:           dialTimeout,
	}
	addr := b.cfg.addr()
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// The handshake does not watch ctx: bound it by a deadline and close
	// the connection if ctx ends first.
	deadline := time.Now().Add(dialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, conf)
	stopped := stop()
	if err != nil {
		_ = nc.Close()
		if !stopped {
			return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, hostKeyHint(err, addr))
	}
	if !stopped {
		_ = c.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	sc, err := pkgsftp.NewClient(client, pkgsftp.UseConcurrentWrites(true), pkgsftp.UseConcurrentReads(true))
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("start sftp session on %s: %w", addr, err)
	}
	s := &session{ssh: client, sftp: sc, done: make(chan struct{}), stopKeepalive: make(chan struct{})}
	_, s.hardlink = sc.HasExtension("hardlink@openssh.com")
	if v, ok := sc.HasExtension("fsync@openssh.com"); ok && v == "1" {
		s.fsync = true
	}
	go func() {
		_ = client.Wait()
		close(s.done)
	}()
	if b.cfg.StallTimeout > 0 {
		interval := min(30*time.Second, b.cfg.StallTimeout/2)
		go s.keepalive(interval, b.cfg.StallTimeout)
	}
	return s, nil
}

// hostKeyHint explains host key failures.
func hostKeyHint(err error, addr string) error {
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		if len(ke.Want) == 0 {
			return fmt.Errorf("the host key of %s is unknown (not in known_hosts); check it and add it, e.g. with ssh-keyscan: %w", addr, err)
		}
		return fmt.Errorf("HOST KEY MISMATCH for %s: the server's key differs from the one in known_hosts (possible man-in-the-middle attack): %w", addr, err)
	}
	return err
}

// hostKeyCheck builds the known_hosts callback and the host key algorithms
// to ask for (those of the keys known for this host, so a server with
// several host keys presents one that can be checked).
func (b *Backend) hostKeyCheck() (ssh.HostKeyCallback, []string, error) {
	files := b.cfg.KnownHostsFiles
	explicit := len(files) > 0
	if !explicit {
		if home, err := os.UserHomeDir(); err == nil {
			files = append(files, filepath.Join(home, ".ssh", "known_hosts"))
		}
		files = append(files, "/etc/ssh/ssh_known_hosts")
	}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if explicit {
			return nil, nil, fmt.Errorf("known_hosts file: %w", err)
		}
	}
	if len(existing) == 0 {
		return nil, nil, fmt.Errorf("no known_hosts file (looked for %s): the server's host key cannot be checked", strings.Join(files, ", "))
	}
	cb, err := knownhosts.New(existing...)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return cb, knownAlgorithms(cb, b.cfg.addr()), nil
}

// knownAlgorithms asks cb which keys it knows for addr (by offering a key
// it cannot know) and returns their host key algorithms; nil if none.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	remote, _ := net.ResolveTCPAddr("tcp", addr)
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, remote, probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor returns the host key algorithms that produce keys of the
// given type.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// signers collects the keys to authenticate with: explicit key files
// (which must load), the agent's keys, then the default key files (those
// that cannot be used without a passphrase are skipped).
// The agent's signers talk to the agent over agentConn (if not nil), which
// the caller closes after the handshake.
func (b *Backend) signers() (out []ssh.Signer, agentConn net.Conn, err error) {
	for _, f := range b.cfg.KeyFiles {
		s, err := loadKey(f)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	if !b.cfg.NoAgent {
		if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
			if c, err := net.Dial("unix", sock); err == nil {
				if ss, err := agent.NewClient(c).Signers(); err == nil && len(ss) > 0 {
					out = append(out, ss...)
					agentConn = c
				} else {
					_ = c.Close()
				}
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			s, err := loadKey(filepath.Join(home, ".ssh", name))
			if err == nil {
				out = append(out, s)
			}
		}
	}
	return out, agentConn, nil
}

func loadKey(file string) (ssh.Signer, error) {
	buf, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(buf)
	if err != nil {
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("ssh key %s is encrypted: load it into an ssh-agent instead", file)
		}
		return nil, fmt.Errorf("ssh key %s: %w", file, err)
	}
	return s, nil
}

// currentUser returns the local user name.
func currentUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if u := os.Getenv("USER"); u != "" {
		return u, nil
	}
	return "", errors.New("cannot determine the user name: give it in the location (user@host)")
}

// isNotExist reports whether an SFTP error means the file does not exist.
func isNotExist(err error) bool {
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	var se *pkgsftp.StatusError
	return errors.As(err, &se) && se.FxCode() == pkgsftp.ErrSSHFxNoSuchFile
}
