package testutil

import (
	"fmt"
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/bufpool"
)

// ArenaMain runs a package's tests with a small buffer arena, as a backup
// runs with one (the arena serves what fits, the size classes the rest, so
// both paths are exercised), and fails the run if any arena buffer is
// still out at the end: one lost on some path (an error, a cancellation, a
// discarded pack) would shrink a long backup's arena for good. Call it
// from TestMain: os.Exit(testutil.ArenaMain(m)).
func ArenaMain(m *testing.M) int {
	bufpool.SetArena(12 << 20)
	code := m.Run()
	if st := bufpool.Arena(); code == 0 && st.Used != 0 {
		fmt.Fprintf(os.Stderr, "bufpool arena: %d bytes still out after all tests (a buffer was not put back)\n", st.Used)
		code = 1
	}
	return code
}
