// Package forget implements restic's snapshot retention policy language
// (the --keep-* options of "forget"), snapshot grouping (--group-by) and the
// JSON shape of "forget --json". It is pure logic: nothing here touches a
// repository.
//
// The semantics follow restic 0.14, the reference peer, except where noted
// on Policy.Validate (cairn refuses inputs that make restic 0.14 silently
// remove every snapshot).
package forget

import (
	"fmt"
	"strconv"
	"strings"
)

// Duration is restic's calendar duration: a number of years, months, days
// and hours, written like "1y2m3d4h". It is applied with time.AddDate, so
// "1m" is a calendar month, not 30 days.
type Duration struct {
	Years  int
	Months int
	Days   int
	Hours  int
}

// ParseDuration parses restic's duration syntax as restic 0.14 does:
// surrounding white space is ignored, the string is a sequence of
// <integer><unit> items with unit one of y, m, d, h, an integer may carry a
// leading '-', a repeated unit overrides the earlier value, and the empty
// string is the zero duration. "1w" and bare numbers are errors.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := 0
		if rest[0] == '-' {
			i = 1
		}
		j := i
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == i {
			return Duration{}, fmt.Errorf("parse duration %q: no number found", s)
		}
		num, err := strconv.Atoi(rest[:j])
		if err != nil {
			return Duration{}, fmt.Errorf("parse duration %q: %w", s, err)
		}
		if j == len(rest) {
			return Duration{}, fmt.Errorf("parse duration %q: no unit found after number %d", s, num)
		}
		switch rest[j] {
		case 'y':
			d.Years = num
		case 'm':
			d.Months = num
		case 'd':
			d.Days = num
		case 'h':
			d.Hours = num
		default:
			r := []rune(rest[j:])[0]
			return Duration{}, fmt.Errorf("parse duration %q: invalid unit %q found after number %d", s, r, num)
		}
		rest = rest[j+1:]
	}
	return d, nil
}

// String formats d in the form ParseDuration reads, leaving out zero
// components ("1y3d"); the zero duration is the empty string.
func (d Duration) String() string {
	var b strings.Builder
	for _, c := range []struct {
		n    int
		unit byte
	}{{d.Years, 'y'}, {d.Months, 'm'}, {d.Days, 'd'}, {d.Hours, 'h'}} {
		if c.n != 0 {
			b.WriteString(strconv.Itoa(c.n))
			b.WriteByte(c.unit)
		}
	}
	return b.String()
}

// Zero reports whether every component of d is zero (no policy).
func (d Duration) Zero() bool { return d == Duration{} }

// Negative reports whether any component of d is below zero.
func (d Duration) Negative() bool {
	return d.Years < 0 || d.Months < 0 || d.Days < 0 || d.Hours < 0
}

// Set parses s into d; with Type and String it makes *Duration a
// pflag.Value, so it can back a command line flag directly.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Type names the flag value type in help output.
func (d *Duration) Type() string { return "duration" }
