package cli

import (
	"fmt"
	"io"
	"net/url"
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

// displayLocation returns a repository location fit for messages: a
// password in a URL location is replaced by "***".
func displayLocation(loc string) string {
	scheme, rest, ok := strings.Cut(loc, ":")
	if !ok || !strings.Contains(rest, "@") {
		return loc
	}
	u, err := url.Parse(rest)
	if err != nil {
		return scheme + ":<unparsable URL>"
	}
	if u.User == nil {
		return loc
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return scheme + ":" + u.String()
}
