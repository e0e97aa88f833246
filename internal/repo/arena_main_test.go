package repo

import (
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestMain: with a buffer arena, and no arena buffer may be lost.
func TestMain(m *testing.M) { os.Exit(testutil.ArenaMain(m)) }
