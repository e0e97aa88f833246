package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

// TestSFTPInterop: cairn init + backup over SFTP to a real sshd, then
// restic (through the system ssh client) checks the repository with
// --read-data and restores it identically.
func TestSFTPInterop(t *testing.T) {
	testutil.RequireRestic(t)
	testutil.RequireTool(t, "ssh")
	srv := servers.StartSSHD(t)
	cairnEnv(t)
	t.Setenv("CAIRN_SFTP_KNOWN_HOSTS", srv.KnownHosts)
	t.Setenv("CAIRN_SFTP_KEY", srv.ClientKey)
	t.Setenv("SSH_AUTH_SOCK", "")
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 22, SkipNonUTF8LinkTargets: true})
	repoDir := filepath.Join(srv.Dir, "repo")
	repo := fmt.Sprintf("sftp://%s@127.0.0.1:%d/%s", srv.User, srv.Port, repoDir)
	mustCairn(t, "-r", repo, "init")
	mustCairn(t, "-r", repo, "backup", src)

	// restic's form of the same repository, over the system ssh.
	resticRepo := fmt.Sprintf("sftp:%s@127.0.0.1:%s", srv.User, repoDir)
	sftpCmd := "sftp.command=" + srv.SFTPCommand()
	out := runResticEnv(t, resticRepo, nil, "-o", sftpCmd, "check", "--read-data")
	if !strings.Contains(out, "no errors were found") {
		t.Fatalf("restic check: %s", out)
	}
	dst := filepath.Join(tmp, "restic-restore")
	runResticEnv(t, resticRepo, nil, "-o", sftpCmd, "restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())

	// A missing repository is reported as such.
	r := cairn(t, "-r", fmt.Sprintf("sftp://%s@127.0.0.1:%d/%s", srv.User, srv.Port, filepath.Join(srv.Dir, "nope")), "snapshots")
	if r.code != ExitNoRepository {
		t.Fatalf("missing sftp repository: exit %d, %s", r.code, r.stderr)
	}
}
