package forget

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/internal/snapshot"
)

// Unlimited is the count value that keeps every bucket ("unlimited" in
// restic 0.16 and later). restic 0.14 does not know it: there a negative
// count keeps nothing, so "--keep-last -1" removes every snapshot.
const Unlimited = -1

// Policy says which snapshots of a group to keep. A snapshot is kept when
// any rule keeps it (the rules are ORed).
type Policy struct {
	Last    int // keep the n newest snapshots
	Hourly  int // keep the newest snapshot of each of the last n hours that have one
	Daily   int // likewise for calendar days
	Weekly  int // likewise for ISO weeks (Monday to Sunday)
	Monthly int // likewise for calendar months
	Yearly  int // likewise for calendar years

	Within        Duration // keep everything newer than newest-Within
	WithinHourly  Duration // keep the newest snapshot of each hour newer than newest-WithinHourly
	WithinDaily   Duration
	WithinWeekly  Duration
	WithinMonthly Duration
	WithinYearly  Duration

	// Tags keeps every snapshot matching any of the AND-groups. An empty
	// group matches snapshots without tags (restic's --keep-tag '').
	Tags snapshot.TagList
}

// Empty reports whether no rule is set. restic refuses to apply an empty
// policy ("no policy was specified"); Apply keeps everything for it.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Yearly == 0 &&
		p.Within.Zero() && p.WithinHourly.Zero() && p.WithinDaily.Zero() &&
		p.WithinWeekly.Zero() && p.WithinMonthly.Zero() && p.WithinYearly.Zero() &&
		len(p.Tags) == 0
}

// ErrInvalidPolicy is wrapped by the errors Validate returns.
var ErrInvalidPolicy = errors.New("invalid policy")

// Validate rejects values that restic 0.14 accepts but that make it forget
// far more than asked: counts below -1 (0.14 also treats -1 that way, cairn
// reads -1 as Unlimited) and negative durations (which move the cut-off
// after the newest snapshot).
func (p Policy) Validate() error {
	for _, c := range []struct {
		name string
		n    int
	}{{"keep-last", p.Last}, {"keep-hourly", p.Hourly}, {"keep-daily", p.Daily},
		{"keep-weekly", p.Weekly}, {"keep-monthly", p.Monthly}, {"keep-yearly", p.Yearly}} {
		if c.n < Unlimited {
			return fmt.Errorf("validate policy: --%s %d: %w: count must be positive or -1 (unlimited)", c.name, c.n, ErrInvalidPolicy)
		}
	}
	for _, d := range []struct {
		name string
		d    Duration
	}{{"keep-within", p.Within}, {"keep-within-hourly", p.WithinHourly},
		{"keep-within-daily", p.WithinDaily}, {"keep-within-weekly", p.WithinWeekly},
		{"keep-within-monthly", p.WithinMonthly}, {"keep-within-yearly", p.WithinYearly}} {
		if d.d.Negative() {
			return fmt.Errorf("validate policy: --%s %v: %w: duration must not be negative", d.name, d.d, ErrInvalidPolicy)
		}
	}
	return nil
}

// formatTagGroup prints one AND-group the way restic does: "[a, b]".
func formatTagGroup(g []string) string { return "[" + strings.Join(g, ", ") + "]" }

// String describes the policy in restic's words, e.g. "keep 2 daily,
// 3 weekly snapshots and all snapshots within 1y of the newest".
func (p Policy) String() string {
	var counts []string
	for _, c := range []struct {
		n     int
		descr string
	}{{p.Last, "latest"}, {p.Hourly, "hourly"}, {p.Daily, "daily"},
		{p.Weekly, "weekly"}, {p.Monthly, "monthly"}, {p.Yearly, "yearly"}} {
		switch {
		case c.n > 0:
			counts = append(counts, fmt.Sprintf("%d %s", c.n, c.descr))
		case c.n == Unlimited:
			counts = append(counts, "all "+c.descr)
		}
	}
	var withins []string
	for _, w := range []struct {
		d     Duration
		descr string
	}{{p.WithinHourly, "hourly"}, {p.WithinDaily, "daily"}, {p.WithinWeekly, "weekly"},
		{p.WithinMonthly, "monthly"}, {p.WithinYearly, "yearly"}} {
		if !w.d.Zero() {
			withins = append(withins, fmt.Sprintf("%s snapshots within %v", w.descr, w.d))
		}
	}
	var s string
	if len(counts) > 0 {
		s = strings.Join(counts, ", ") + " snapshots"
	}
	if len(withins) > 0 {
		if s != "" {
			s += ", "
		}
		s += strings.Join(withins, ", ")
	}
	if len(p.Tags) > 0 {
		if s != "" {
			s += " and "
		}
		groups := make([]string, len(p.Tags))
		for i, g := range p.Tags {
			groups[i] = formatTagGroup(g)
		}
		s += "all snapshots with tags [" + strings.Join(groups, " ") + "]"
	}
	if !p.Within.Zero() {
		if s != "" {
			s += " and "
		}
		s += fmt.Sprintf("all snapshots within %v of the newest", p.Within)
	}
	return "keep " + s
}

// Counters are the bucket counts left after a snapshot was evaluated, as in
// restic's forget --json "counters" (zero counts are omitted).
type Counters struct {
	Last    int `json:"last,omitempty"`
	Hourly  int `json:"hourly,omitempty"`
	Daily   int `json:"daily,omitempty"`
	Weekly  int `json:"weekly,omitempty"`
	Monthly int `json:"monthly,omitempty"`
	Yearly  int `json:"yearly,omitempty"`
}

// KeepReason says why a snapshot was kept. Matches uses restic's phrases:
// "has tags [a]", "within 1d", "last snapshot", "hourly snapshot", ...,
// "daily within 7d", or "policy is empty".
type KeepReason struct {
	Snapshot *snapshot.Snapshot `json:"snapshot"`
	Matches  []string           `json:"matches"`
	Counters Counters           `json:"counters"`
}

// hasTagGroup reports whether sn matches one AND-group with restic 0.14's
// rule: an empty group, or an empty tag met before any missing tag, matches
// an untagged snapshot; otherwise every tag of the group must be present.
func hasTagGroup(sn *snapshot.Snapshot, group []string) bool {
	if len(group) == 0 {
		return len(sn.Tags) == 0
	}
	for _, want := range group {
		if want == "" && len(sn.Tags) == 0 {
			return true
		}
		found := false
		for _, have := range sn.Tags {
			if have == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sortNewestFirst returns a copy of list ordered newest first. Snapshots
// with equal times are ordered by ID (ascending) when both have one, and
// otherwise keep their input order. restic 0.14 leaves that order to an
// unstable sort of a concurrently loaded list, so it varies between runs;
// cairn fixes it so the outcome is reproducible.
func sortNewestFirst(list []*snapshot.Snapshot) []*snapshot.Snapshot {
	out := make([]*snapshot.Snapshot, len(list))
	copy(out, list)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		ai, bi := a.ID(), b.ID()
		if ai != nil && bi != nil {
			return ai.String() < bi.String()
		}
		return false
	})
	return out
}

// latestTime is the newest snapshot time that is not after now; the
// duration rules count back from it. Snapshots from the future are thereby
// ignored as reference points (and always kept by those rules). With only
// future snapshots it is the zero time.
func latestTime(list []*snapshot.Snapshot, now time.Time) time.Time {
	var latest time.Time
	for _, sn := range list {
		if sn.Time.After(latest) && sn.Time.Before(now) {
			latest = sn.Time
		}
	}
	return latest
}

// cutoff returns latest minus d, computed as restic does (calendar part
// first, then hours).
func cutoff(latest time.Time, d Duration) time.Time {
	return latest.AddDate(-d.Years, -d.Months, -d.Days).Add(time.Duration(-d.Hours) * time.Hour)
}

// Bucket functions map a snapshot time to the period it falls in. They use
// the wall clock of the time value as it is stored (the offset recorded in
// the snapshot), exactly as restic does, so a snapshot taken at 00:30 local
// time counts for that local day whatever the zone of the machine running
// forget.
func hourBucket(t time.Time) int {
	return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour()
}

func dayBucket(t time.Time) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }

func weekBucket(t time.Time) int {
	y, w := t.ISOWeek()
	return y*100 + w
}

func monthBucket(t time.Time) int { return t.Year()*100 + int(t.Month()) }

func yearBucket(t time.Time) int { return t.Year() }

// Apply splits list into the snapshots p keeps and those it removes, using
// the current time to recognise snapshots from the future. list is one group
// (see Group); it is not modified. keep and remove are newest first, and
// reasons[i] explains keep[i]. An empty policy keeps everything.
func Apply(list []*snapshot.Snapshot, p Policy) (keep, remove []*snapshot.Snapshot, reasons []KeepReason) {
	return ApplyAt(list, p, time.Now())
}

// ApplyAt is Apply with an explicit current time.
func ApplyAt(list []*snapshot.Snapshot, p Policy, now time.Time) (keep, remove []*snapshot.Snapshot, reasons []KeepReason) {
	return applySorted(sortNewestFirst(list), p, now)
}

// applySorted applies p to list, which must already be ordered newest
// first; the order among equal times decides which of them a bucket keeps.
func applySorted(list []*snapshot.Snapshot, p Policy, now time.Time) (keep, remove []*snapshot.Snapshot, reasons []KeepReason) {
	if len(list) == 0 {
		return nil, nil, nil
	}
	if p.Empty() {
		for _, sn := range list {
			reasons = append(reasons, KeepReason{Snapshot: sn, Matches: []string{"policy is empty"}})
		}
		return list, nil, reasons
	}

	// A bucket keeps the first (newest) snapshot of each period it has not
	// seen yet, while it has count left.
	type countBucket struct {
		left   int
		period func(t time.Time, nr int) int
		seen   bool
		last   int
		reason string
	}
	buckets := [6]countBucket{
		{left: p.Last, period: func(_ time.Time, nr int) int { return nr }, reason: "last snapshot"},
		{left: p.Hourly, period: func(t time.Time, _ int) int { return hourBucket(t) }, reason: "hourly snapshot"},
		{left: p.Daily, period: func(t time.Time, _ int) int { return dayBucket(t) }, reason: "daily snapshot"},
		{left: p.Weekly, period: func(t time.Time, _ int) int { return weekBucket(t) }, reason: "weekly snapshot"},
		{left: p.Monthly, period: func(t time.Time, _ int) int { return monthBucket(t) }, reason: "monthly snapshot"},
		{left: p.Yearly, period: func(t time.Time, _ int) int { return yearBucket(t) }, reason: "yearly snapshot"},
	}

	latest := latestTime(list, now)

	// A within bucket keeps the newest snapshot of each period, for
	// snapshots strictly after its cut-off; it has no count.
	type withinBucket struct {
		within Duration
		after  time.Time
		period func(t time.Time) int
		seen   bool
		last   int
		reason string
	}
	withins := [5]withinBucket{
		{within: p.WithinHourly, period: hourBucket, reason: "hourly within"},
		{within: p.WithinDaily, period: dayBucket, reason: "daily within"},
		{within: p.WithinWeekly, period: weekBucket, reason: "weekly within"},
		{within: p.WithinMonthly, period: monthBucket, reason: "monthly within"},
		{within: p.WithinYearly, period: yearBucket, reason: "yearly within"},
	}
	for i := range withins {
		withins[i].after = cutoff(latest, withins[i].within)
	}
	withinAfter := cutoff(latest, p.Within)

	for nr, sn := range list {
		var matches []string

		for _, g := range p.Tags {
			if hasTagGroup(sn, g) {
				matches = append(matches, "has tags "+formatTagGroup(g))
			}
		}

		if !p.Within.Zero() && sn.Time.After(withinAfter) {
			matches = append(matches, fmt.Sprintf("within %v", p.Within))
		}

		for i := range buckets {
			b := &buckets[i]
			if b.left <= 0 && b.left != Unlimited {
				continue
			}
			v := b.period(sn.Time, nr)
			if b.seen && v == b.last {
				continue
			}
			b.seen, b.last = true, v
			if b.left > 0 {
				b.left--
			}
			matches = append(matches, b.reason)
		}

		for i := range withins {
			w := &withins[i]
			if w.within.Zero() || !sn.Time.After(w.after) {
				continue
			}
			v := w.period(sn.Time)
			if w.seen && v == w.last {
				continue
			}
			w.seen, w.last = true, v
			matches = append(matches, fmt.Sprintf("%s %v", w.reason, w.within))
		}

		if len(matches) == 0 {
			remove = append(remove, sn)
			continue
		}
		keep = append(keep, sn)
		reasons = append(reasons, KeepReason{
			Snapshot: sn,
			Matches:  matches,
			Counters: Counters{
				Last:    buckets[0].left,
				Hourly:  buckets[1].left,
				Daily:   buckets[2].left,
				Weekly:  buckets[3].left,
				Monthly: buckets[4].left,
				Yearly:  buckets[5].left,
			},
		})
	}
	return keep, remove, reasons
}
