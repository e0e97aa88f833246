package sha256x

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestGenerated: sha256x_amd64.s is what gen.go writes (edit the generator,
// not the assembly).
func TestGenerated(t *testing.T) {
	out, err := exec.Command("go", "run", "gen.go").Output()
	if err != nil {
		t.Fatalf("go run gen.go: %v", err)
	}
	have, err := os.ReadFile("sha256x_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, have) {
		t.Fatal("sha256x_amd64.s is out of date: go run gen.go > sha256x_amd64.s")
	}
}
