package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func readAllStdin() ([]byte, error) { return io.ReadAll(os.Stdin) }

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

// runPasswordCommand runs cmd through the shell and returns its first line.
func runPasswordCommand(cmd string) (string, error) {
	c := exec.Command("sh", "-c", cmd)
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("password command %q: %w", cmd, err)
	}
	pw := strings.TrimRight(strings.SplitN(string(out), "\n", 2)[0], "\r")
	if pw == "" {
		return "", fmt.Errorf("password command %q printed nothing", cmd)
	}
	return pw, nil
}
