// Package ui draws progress on a terminal and formats sizes and durations.
package ui

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Ticker calls fn at an interval until Stop; it calls fn once more with
// final=true at Stop.
type Ticker struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// StartTicker starts calling fn every interval.
func StartTicker(interval time.Duration, fn func(final bool)) *Ticker {
	t := &Ticker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				fn(true)
				return
			case <-tk.C:
				fn(false)
			}
		}
	}()
	return t
}

// Stop stops the ticker after a final call.
func (t *Ticker) Stop() {
	t.once.Do(func() { close(t.stop); <-t.done })
}

// StatusLine rewrites one line on a terminal.
type StatusLine struct {
	mu   sync.Mutex // guards w, last
	w    io.Writer
	last int
}

// NewStatusLine writes to w (which should be a terminal).
func NewStatusLine(w io.Writer) *StatusLine { return &StatusLine{w: w} }

// Set replaces the status text.
func (s *StatusLine) Set(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	width := 0
	if f, ok := s.w.(*os.File); ok {
		width, _, _ = term.GetSize(int(f.Fd()))
	}
	if width > 1 && len(text) >= width {
		text = text[:width-1]
	}
	pad := ""
	if s.last > len(text) {
		pad = strings.Repeat(" ", s.last-len(text))
	}
	fmt.Fprintf(s.w, "\r%s%s", text, pad)
	s.last = len(text)
}

// Done ends the status line.
func (s *StatusLine) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last > 0 {
		fmt.Fprintf(s.w, "\r%s\r", strings.Repeat(" ", s.last))
	}
	s.last = 0
}

// Bytes formats a byte count with binary units.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.3f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration formats d as [h:]mm:ss.
func Duration(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// Bar renders a progress bar of the given width for done/total.
func Bar(done, total uint64, width int) string {
	if total == 0 || width <= 2 {
		return ""
	}
	if done > total {
		done = total
	}
	n := int(float64(width-2) * float64(done) / float64(total))
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-2-n) + "]"
}

// ETA estimates the remaining time from progress so far.
func ETA(elapsed time.Duration, done, total uint64) string {
	if done == 0 || total <= done {
		return ""
	}
	rem := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
	return "ETA " + Duration(rem)
}
