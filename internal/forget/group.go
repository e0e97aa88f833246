package forget

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/internal/snapshot"
)

// GroupBy says which snapshot properties separate groups (restic's
// --group-by). The zero value puts all snapshots in one group.
type GroupBy struct {
	Host  bool
	Paths bool
	Tags  bool
}

// DefaultGroupBy is restic's default, "host,paths".
var DefaultGroupBy = GroupBy{Host: true, Paths: true}

// ParseGroupBy parses a comma separated list of "host", "paths" and "tags"
// (restic also accepts "hosts", "path" and "tag"). Empty items are skipped,
// so "" means no grouping. Anything else is an error, matched case
// sensitively and without trimming, as in restic.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	for _, item := range strings.Split(s, ",") {
		switch item {
		case "":
		case "host", "hosts":
			g.Host = true
		case "path", "paths":
			g.Paths = true
		case "tag", "tags":
			g.Tags = true
		default:
			return GroupBy{}, fmt.Errorf("parse group-by %q: unknown grouping option: '%s'", s, item)
		}
	}
	return g, nil
}

// String returns the canonical form ParseGroupBy reads ("host,paths").
func (g GroupBy) String() string {
	var parts []string
	if g.Host {
		parts = append(parts, "host")
	}
	if g.Paths {
		parts = append(parts, "paths")
	}
	if g.Tags {
		parts = append(parts, "tags")
	}
	return strings.Join(parts, ",")
}

// Set parses s into g, making *GroupBy a pflag.Value.
func (g *GroupBy) Set(s string) error {
	v, err := ParseGroupBy(s)
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// Type names the flag value type in help output.
func (g *GroupBy) Type() string { return "group" }

// GroupKey identifies a group; fields not grouped by stay empty. Paths and
// Tags are sorted copies (nil when empty). Its JSON form is restic's
// "group_key": {"hostname":..,"paths":..,"tags":..}.
type GroupKey struct {
	Hostname string   `json:"hostname"`
	Paths    []string `json:"paths"`
	Tags     []string `json:"tags"`
}

// String renders the key for messages, e.g. "host h1, paths [/a], tags [x]".
func (k GroupKey) String() string {
	var parts []string
	if k.Hostname != "" {
		parts = append(parts, "host "+k.Hostname)
	}
	if len(k.Paths) > 0 {
		parts = append(parts, fmt.Sprintf("paths %v", k.Paths))
	}
	if len(k.Tags) > 0 {
		parts = append(parts, fmt.Sprintf("tags %v", k.Tags))
	}
	return strings.Join(parts, ", ")
}

// SnapshotGroup is one group and its snapshots in input order.
type SnapshotGroup struct {
	Key       GroupKey
	Snapshots []*snapshot.Snapshot
}

func sortedCopy(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	out := append([]string(nil), l...)
	sort.Strings(out)
	return out
}

// KeyFor returns the group key of sn under g.
func KeyFor(sn *snapshot.Snapshot, g GroupBy) GroupKey {
	var k GroupKey
	if g.Host {
		k.Hostname = sn.Hostname
	}
	if g.Paths {
		k.Paths = sortedCopy(sn.Paths)
	}
	if g.Tags {
		k.Tags = sortedCopy(sn.Tags)
	}
	return k
}

// keyString is a collision-free encoding of k used as a map key.
func keyString(k GroupKey) string {
	b, err := json.Marshal(k)
	if err != nil {
		// Marshalling strings and string slices cannot fail.
		panic(fmt.Sprintf("forget: marshal group key: %v", err))
	}
	return string(b)
}

// compareLists orders string lists element by element, a prefix first.
func compareLists(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// lessKey orders group keys by host, then paths, then tags.
func lessKey(a, b GroupKey) bool {
	if a.Hostname != b.Hostname {
		return a.Hostname < b.Hostname
	}
	if c := compareLists(a.Paths, b.Paths); c != 0 {
		return c < 0
	}
	return compareLists(a.Tags, b.Tags) < 0
}

// Group splits list into groups under g. Groups are ordered by key (host,
// then paths, then tags; empty first), so the result is deterministic;
// restic prints groups in map order. Snapshots keep their
// input order within a group. The snapshots are not modified (restic 0.14
// sorts their tag lists in place).
func Group(list []*snapshot.Snapshot, g GroupBy) []SnapshotGroup {
	index := make(map[string]int)
	var groups []SnapshotGroup
	for _, sn := range list {
		k := KeyFor(sn, g)
		ks := keyString(k)
		i, ok := index[ks]
		if !ok {
			i = len(groups)
			index[ks] = i
			groups = append(groups, SnapshotGroup{Key: k})
		}
		groups[i].Snapshots = append(groups[i].Snapshots, sn)
	}
	sort.Slice(groups, func(a, b int) bool { return lessKey(groups[a].Key, groups[b].Key) })
	return groups
}

// Result is the outcome of a policy for one group.
type Result struct {
	Key     GroupKey
	Keep    []*snapshot.Snapshot
	Remove  []*snapshot.Snapshot
	Reasons []KeepReason
}

// ApplyGroups groups list under g and applies p to every group at time now,
// as "restic forget" does. Groups come in Group's order.
func ApplyGroups(list []*snapshot.Snapshot, g GroupBy, p Policy, now time.Time) []Result {
	groups := Group(list, g)
	out := make([]Result, 0, len(groups))
	for _, grp := range groups {
		keep, remove, reasons := ApplyAt(grp.Snapshots, p, now)
		out = append(out, Result{Key: grp.Key, Keep: keep, Remove: remove, Reasons: reasons})
	}
	return out
}
