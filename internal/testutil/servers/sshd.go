package servers

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDEnvBinary names the environment variable that overrides which sshd
// binary the tests use.
const SSHDEnvBinary = "CAIRN_TEST_SSHD"

// privsepDir is the directory sshd running as root insists on (Debian's
// service unit creates it at boot).
const privsepDir = "/run/sshd"

// SSHServer is a running OpenSSH sshd that accepts one generated client key
// for the current user and serves SFTP (internal-sftp).
type SSHServer struct {
	Host string // "127.0.0.1"
	Port int
	User string // the current user: the only one allowed to log in
	// ClientKey is the path of the client's private key (OpenSSH format,
	// unencrypted, mode 0600); its public key is the only authorized key.
	ClientKey string
	// KnownHosts is the path of a known_hosts file holding the server's
	// host key for [127.0.0.1]:Port.
	KnownHosts string
	HostKey    ssh.PublicKey
	// Dir is an empty scratch directory on the server's file system for
	// repositories (the server runs on this machine). It is in memory
	// (/dev/shm) where possible, since every SFTP save fsyncs a file and a
	// directory, and removed when the test ends.
	Dir string
}

// StartSSHD starts sshd in the foreground (-D) on a free loopback port with
// a private configuration: a generated host key, one generated client key
// in its authorized_keys, no PAM and no passwords, `Subsystem sftp
// internal-sftp`. It is stopped when t ends. Without sshd (Debian package
// openssh-server) the test is skipped, or failed in CI.
//
// sshd running as root needs the privilege separation directory /run/sshd;
// it is created (mode 0755, as the openssh-server service does) if missing.
func StartSSHD(t testing.TB) *SSHServer {
	t.Helper()
	bin := findBinary(t, "sshd", SSHDEnvBinary, "Debian package openssh-server")
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Mkdir(privsepDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatalf("create sshd privilege separation directory: %v", err)
		}
	}
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "sshd")
	if err := os.Mkdir(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := scratchDir(t)
	hostPub, hostKeyPath := writeKey(t, cfgDir, "host_ed25519")
	clientPub, clientKeyPath := writeKey(t, cfgDir, "client_ed25519")
	authKeys := filepath.Join(cfgDir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}

	s := &SSHServer{Host: "127.0.0.1", User: u.Username, ClientKey: clientKeyPath, HostKey: hostPub, Dir: data}
	_, port := startWithRetry(t, "sshd", func(port int) (*process, error) {
		cfg := sshdConfig(port, hostKeyPath, authKeys, u.Username)
		cfgPath := filepath.Join(cfgDir, "sshd_config")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		// -D: stay in the foreground; -e: log to stderr.
		return startProcess("sshd", bin, []string{"-D", "-e", "-f", cfgPath}, cleanEnv(), cfgDir)
	})
	s.Port = port
	s.KnownHosts = filepath.Join(cfgDir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, hostPub)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func sshdConfig(port int, hostKey, authKeys, userName string) string {
	lines := []string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"PidFile none",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile " + authKeys,
		// The key files live in a test's temporary directory, whose
		// parents sshd would otherwise check for ownership and modes.
		"StrictModes no",
		"AllowUsers " + userName,
		"PermitRootLogin prohibit-password",
		"X11Forwarding no",
		"AllowTcpForwarding no",
		"PrintMotd no",
		"Subsystem sftp internal-sftp",
		"LogLevel INFO",
	}
	return strings.Join(lines, "\n") + "\n"
}

// writeKey generates an ed25519 key pair and writes the private key in
// OpenSSH format (mode 0600) and the public key (.pub) into dir.
func writeKey(t testing.TB, dir, name string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "cairn test "+name)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatal(err)
	}
	return sshPub, path
}

// Addr returns "127.0.0.1:PORT".
func (s *SSHServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// SSHArgs returns the arguments of the system ssh client that reach this
// server as User with ClientKey, checking the host key against KnownHosts
// and ignoring the user's own ssh configuration; the destination comes
// last. Append "-s", "sftp" for the SFTP subsystem.
func (s *SSHServer) SSHArgs() []string {
	return []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(s.Port),
		"-i", s.ClientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		s.User + "@" + s.Host,
	}
}

// SFTPCommand returns the command line (space separated; no argument
// contains a space unless the temporary directory does) that starts an
// SFTP session over the system ssh client, for restic's
// `-o sftp.command=...`.
func (s *SSHServer) SFTPCommand() string {
	return "ssh " + strings.Join(s.SSHArgs(), " ") + " -s sftp"
}

// String describes the server for messages.
func (s *SSHServer) String() string { return fmt.Sprintf("sshd at %s (user %s)", s.Addr(), s.User) }

// scratchDir returns a new empty directory in /dev/shm (a tmpfs, where
// fsync is cheap) if possible, else in t.TempDir(); it is removed when t
// ends.
func scratchDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "cairn-test-"); err == nil {
			t.Cleanup(func() {
				// Saved files are read-only; the directories are not.
				if err := os.RemoveAll(d); err != nil {
					t.Errorf("remove scratch directory: %v", err)
				}
			})
			return d
		}
	}
	d := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}
