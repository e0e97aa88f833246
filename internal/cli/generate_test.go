package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateManAndCompletions(t *testing.T) {
	dir := t.TempDir()
	mustCairn(t, "generate", "--man", filepath.Join(dir, "man"), "--bash-completion", filepath.Join(dir, "cairn.bash"), "--zsh-completion", filepath.Join(dir, "_cairn"), "--fish-completion", filepath.Join(dir, "cairn.fish"))
	for _, page := range []string{"cairn.1", "cairn-backup.1", "cairn-restore.1", "cairn-prune.1"} {
		b, err := os.ReadFile(filepath.Join(dir, "man", page))
		if err != nil || !strings.Contains(string(b), ".TH") {
			t.Fatalf("man page %s: %v", page, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cairn.bash"))
	if !strings.Contains(string(b), "cairn") {
		t.Fatal("empty bash completion")
	}
	out := mustCairn(t, "completion", "bash")
	if !strings.Contains(out, "__start_cairn") {
		t.Fatalf("completion bash: %.200s", out)
	}
}
