package cli

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestRestoreKilledAndRerun: a restore killed (SIGKILL) before its first,
// second or third pack leaves a partly written target; running the same
// restore again into it — with the default --overwrite always and with
// --overwrite if-changed, which must see that half-written files are not the
// snapshot's — yields exactly the snapshot, and --verify agrees.
func TestRestoreKilledAndRerun(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	srcs := makeSources(t, tmp, 2, 23)
	// 15 MiB more of incompressible data: with 4 MiB packs the restore
	// reads several packs
	rnd := rand.New(rand.NewPCG(23, 5))
	for i := range 3 {
		buf := make([]byte, 5<<20)
		for j := range buf {
			buf[j] = byte(rnd.Uint32())
		}
		if err := os.WriteFile(filepath.Join(srcs[1], fmt.Sprintf("big%d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "--pack-size", "4", "backup", "-q", srcs[0], srcs[1])
	for _, overwrite := range []string{"always", "if-changed"} {
		for _, hit := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s-kill@%d", overwrite, hit), func(t *testing.T) {
				dst := filepath.Join(tmp, fmt.Sprintf("dst-%s-%d", overwrite, hit))
				code, out := runProcess(t, []string{fmt.Sprintf("CAIRN_FAILPOINTS=restore.pack=kill@%d", hit)},
					"-r", repoDir, "restore", "latest", "--target", dst)
				if code == 0 {
					t.Fatalf("restore was not killed at pack %d: %s", hit, out)
				}
				mustCairn(t, "-r", repoDir, "unlock")
				mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--overwrite", overwrite, "--verify")
				for _, src := range srcs {
					testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{})
				}
			})
		}
	}
}
