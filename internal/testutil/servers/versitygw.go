package servers

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// VersityGWEnvBinary names the environment variable that overrides which
// versitygw binary the tests use.
const VersityGWEnvBinary = "CAIRN_TEST_VERSITYGW"

// S3Server is a running versitygw S3 gateway over a POSIX directory.
type S3Server struct {
	Endpoint  string // "127.0.0.1:PORT"
	URL       string // "http://127.0.0.1:PORT"
	AccessKey string // root access key (random)
	SecretKey string // root secret key (random)
	Region    string
	// Dir is the gateway's root: every subdirectory is a bucket and the
	// objects are files below it (object "a/b" of bucket "x" is Dir/x/a/b).
	Dir string
}

// StartS3 starts versitygw (`versitygw posix`) on a free loopback port with
// random root credentials, over a new temporary directory. The server is
// stopped when t ends. Without versitygw (see scripts/install-s3.sh) the
// test is skipped, or failed in CI.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	bin := findBinary(t, "versitygw", VersityGWEnvBinary, "scripts/install-s3.sh installs it: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	dir := t.TempDir()
	root := filepath.Join(dir, "gw")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &S3Server{
		AccessKey: "cairn" + randomHex(8),
		SecretKey: randomHex(20),
		Region:    "us-east-1",
		Dir:       root,
	}
	// Credentials go through the environment, not the command line.
	env := append(cleanEnv("VGW_", "ROOT_", "AWS_"),
		"ROOT_ACCESS_KEY="+s.AccessKey,
		"ROOT_SECRET_KEY="+s.SecretKey,
		"VGW_REGION="+s.Region,
	)
	_, port := startWithRetry(t, "versitygw", func(port int) (*process, error) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return startProcess("versitygw", bin, []string{"--port", addr, "--quiet", "posix", root}, env, dir)
	})
	s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Endpoint
	return s
}

// Env returns the AWS_* variables that give a client (restic, cairn) the
// server's root credentials and region.
func (s *S3Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_DEFAULT_REGION=" + s.Region,
	}
}

// String describes the server for messages.
func (s *S3Server) String() string { return fmt.Sprintf("versitygw at %s (root %s)", s.URL, s.Dir) }
