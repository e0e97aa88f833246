package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

// BenchmarkBackends measures a first backup and a full restore of the same
// data on every backend, each against a real server on loopback:
//
//	go test -run '^$' -bench Backends -benchtime 1x ./internal/cli/
//
// It reports MB/s for backup and restore per backend.
func BenchmarkBackends(b *testing.B) {
	b.Setenv("CAIRN_KDF_PARAMS", "1024,1,1")
	b.Setenv("CAIRN_PASSWORD", testPassword)
	b.Setenv("CAIRN_REPOSITORY", "")
	b.Setenv("CAIRN_CACHE_DIR", b.TempDir())
	tmp := b.TempDir()
	src := filepath.Join(tmp, "src")
	size := benchSource(b, src)

	s3 := servers.StartS3(b)
	for _, kv := range append(s3.Env(), "AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_REGION=", "CAIRN_S3_REGION=", "CAIRN_S3_BUCKET_LOOKUP=", "CAIRN_S3_STORAGE_CLASS=") {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	ssh := servers.StartSSHD(b)
	b.Setenv("CAIRN_SFTP_KNOWN_HOSTS", ssh.KnownHosts)
	b.Setenv("CAIRN_SFTP_KEY", ssh.ClientKey)
	b.Setenv("SSH_AUTH_SOCK", "")
	rest := startInProcServer(b, filepath.Join(tmp, "served"))
	rcloneDir := filepath.Join(tmp, "rclone")
	os.MkdirAll(rcloneDir, 0o700)

	locations := []struct{ name, loc string }{
		{"local", filepath.Join(tmp, "local")},
		{"rest", rest.URL + "/repo/"},
		{"s3", "s3:" + s3.URL + "/bench/repo"},
		{"sftp", fmt.Sprintf("sftp://%s@127.0.0.1:%d/%s", ssh.User, ssh.Port, filepath.Join(ssh.Dir, "repo"))},
		{"rclone", "rclone::local:" + rcloneDir},
	}
	locations[1].loc = "rest:" + locations[1].loc
	for _, l := range locations {
		b.Run(l.name, func(b *testing.B) {
			for i := range b.N {
				loc := l.loc
				if i > 0 {
					loc += fmt.Sprint(i)
				}
				benchCairn(b, "-r", loc, "init")
				bt := testingClock()
				benchCairn(b, "-r", loc, "backup", "-q", src)
				backup := bt()
				rt := testingClock()
				benchCairn(b, "-r", loc, "--no-cache", "restore", "-q", "latest", "--target", filepath.Join(tmp, "restore-"+l.name+fmt.Sprint(i)))
				restore := rt()
				b.ReportMetric(float64(size)/backup/1e6, "backup-MB/s")
				b.ReportMetric(float64(size)/restore/1e6, "restore-MB/s")
				os.RemoveAll(filepath.Join(tmp, "restore-"+l.name+fmt.Sprint(i)))
			}
		})
	}
}

// testingClock returns a function giving the seconds since it was made.
func testingClock() func() float64 {
	start := nowFunc()
	return func() float64 { return nowFunc().Sub(start).Seconds() }
}

var nowFunc = func() time.Time { return time.Now() }
