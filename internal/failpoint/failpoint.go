// Package failpoint implements named crash points for tests and for users
// who want to test their own setup. They are configured with the
// environment variable CAIRN_FAILPOINTS, a comma separated list of
//
//	name=kill          the process kills itself with SIGKILL
//	name=error         the step fails with an error naming the failpoint
//	name=sleep(1s)     the step is delayed
//	name=panic         the goroutine panics
//
// An action may carry "@N" to fire only on the N-th time the point is
// reached (counting from 1), e.g. backup.after-pack-upload=kill@3.
// docs/failpoints.md lists every point.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type action struct {
	kind  string // kill, error, sleep, panic
	sleep time.Duration
	nth   int // 0: every time
}

var (
	mu     sync.Mutex // guards points, hits, loaded
	points map[string]action
	hits   map[string]int
	loaded bool
)

// ErrInjected is wrapped by errors produced by an "error" failpoint.
type ErrInjected struct{ Name string }

func (e *ErrInjected) Error() string { return "failpoint " + e.Name + ": injected error" }

func load() {
	if loaded {
		return
	}
	loaded = true
	points = map[string]action{}
	hits = map[string]int{}
	if err := parseInto(os.Getenv("CAIRN_FAILPOINTS"), points); err != nil {
		fmt.Fprintf(os.Stderr, "cairn: ignoring CAIRN_FAILPOINTS: %v\n", err)
		points = map[string]action{}
	}
}

func parseInto(spec string, out map[string]action) error {
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, act, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return fmt.Errorf("%q: want name=action", item)
		}
		a := action{}
		if at := strings.LastIndex(act, "@"); at >= 0 {
			n, err := strconv.Atoi(act[at+1:])
			if err != nil || n < 1 {
				return fmt.Errorf("%q: bad count after @", item)
			}
			a.nth = n
			act = act[:at]
		}
		switch {
		case act == "kill" || act == "error" || act == "panic":
			a.kind = act
		case strings.HasPrefix(act, "sleep(") && strings.HasSuffix(act, ")"):
			d, err := time.ParseDuration(act[len("sleep(") : len(act)-1])
			if err != nil {
				return fmt.Errorf("%q: %w", item, err)
			}
			a.kind, a.sleep = "sleep", d
		default:
			return fmt.Errorf("%q: unknown action %q (want kill, error, panic or sleep(D))", item, act)
		}
		out[name] = a
	}
	return nil
}

// Set replaces the configuration (tests); an empty spec disables all points.
func Set(spec string) error {
	m := map[string]action{}
	if err := parseInto(spec, m); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	loaded = true
	points = m
	hits = map[string]int{}
	return nil
}

// Inject runs the action configured for name, if any. It returns a non-nil
// error only for "error" actions.
func Inject(name string) error {
	mu.Lock()
	load()
	a, ok := points[name]
	if !ok {
		mu.Unlock()
		return nil
	}
	hits[name]++
	n := hits[name]
	mu.Unlock()
	if a.nth != 0 && n != a.nth {
		return nil
	}
	switch a.kind {
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // wait for the signal to land
	case "panic":
		panic("failpoint " + name)
	case "sleep":
		time.Sleep(a.sleep)
	case "error":
		return &ErrInjected{Name: name}
	}
	return nil
}
