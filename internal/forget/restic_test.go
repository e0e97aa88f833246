package forget

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/forget/restictest"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// The differential test builds one restic repository per test binary with
// snapshots at chosen times, then checks for many policies that restic 0.14
// ("forget --dry-run --json") and Apply keep the same snapshots for the same
// reasons.

type snapSpec struct {
	time string // restic --time, in the zone tz
	tz   string // TZ for the backup process ("" = UTC)
	host string
	dir  string // data directory name
	tags []string
}

// fixtureSpecs covers hour/day/ISO-week/month/year boundaries, equal times
// (same and different wall clocks), several hosts, paths and tag sets, a
// snapshot in another zone and one from the future.
var fixtureSpecs = []snapSpec{
	// main group: h1, data1
	{time: "2019-06-15 12:00:00", host: "h1", dir: "data1"},
	{time: "2020-12-31 10:00:00", host: "h1", dir: "data1", tags: []string{"a"}},
	{time: "2021-01-03 23:00:00", host: "h1", dir: "data1"}, // Sunday, ISO week 2020-53
	{time: "2021-01-04 00:00:00", host: "h1", dir: "data1"}, // Monday, ISO week 2021-01
	{time: "2022-07-01 08:00:00", host: "h1", dir: "data1", tags: []string{"b"}},
	{time: "2023-12-31 23:30:00", host: "h1", dir: "data1"},
	{time: "2024-01-01 00:30:00", tz: "Europe/Berlin", host: "h1", dir: "data1"}, // same instant as above
	{time: "2024-01-02 03:04:05", host: "h1", dir: "data1"},
	{time: "2024-01-02 03:04:05", host: "h1", dir: "data1", tags: []string{"a"}},
	{time: "2024-01-02 03:30:00", host: "h1", dir: "data1"},
	{time: "2024-01-02 04:00:00", host: "h1", dir: "data1", tags: []string{"a", "b"}},
	{time: "2024-01-02 04:59:59", host: "h1", dir: "data1"},
	{time: "2024-01-02 23:59:59", host: "h1", dir: "data1"},
	{time: "2024-01-03 00:00:00", host: "h1", dir: "data1", tags: []string{"b", "a"}},
	{time: "2024-02-29 12:00:00", host: "h1", dir: "data1"},
	{time: "2024-03-01 12:00:00", host: "h1", dir: "data1"},
	{time: "2024-03-01 12:00:00", host: "h1", dir: "data1"},
	{time: "2024-03-01 12:00:00", host: "h1", dir: "data1", tags: []string{"b"}},
	{time: "2024-03-31 18:00:00", host: "h1", dir: "data1"},
	{time: "2024-06-30 23:30:00", tz: "Europe/Berlin", host: "h1", dir: "data1"},
	{time: "2024-12-29 20:00:00", host: "h1", dir: "data1"}, // Sunday, ISO week 2024-52
	{time: "2024-12-30 09:00:00", host: "h1", dir: "data1"}, // Monday, ISO week 2025-01
	{time: "2025-05-31 22:00:00", host: "h1", dir: "data1", tags: []string{"a"}},
	{time: "2025-06-01 09:00:00", host: "h1", dir: "data1"},
	{time: "2025-06-01 10:00:00", host: "h1", dir: "data1"},
	{time: "2099-01-01 00:00:00", host: "h1", dir: "data1"}, // future
	// second host, same path
	{time: "2023-05-05 05:05:05", host: "h2", dir: "data1"},
	{time: "2024-01-02 03:04:05", host: "h2", dir: "data1", tags: []string{"a"}},
	{time: "2024-01-09 03:04:05", host: "h2", dir: "data1"},
	{time: "2024-02-09 03:04:05", host: "h2", dir: "data1", tags: []string{"b"}},
	{time: "2025-02-09 03:04:05", host: "h2", dir: "data1"},
	{time: "2025-02-09 04:04:05", host: "h2", dir: "data1"},
	// first host, second path
	{time: "2022-01-01 00:00:00", host: "h1", dir: "data2"},
	{time: "2024-01-02 03:04:05", host: "h1", dir: "data2"},
	{time: "2024-04-01 00:00:00", host: "h1", dir: "data2", tags: []string{"a"}},
	{time: "2025-01-01 00:00:00", host: "h1", dir: "data2"},
	// third host, both paths
	{time: "2024-05-05 05:05:05", host: "h3", dir: "data1 data2"},
	{time: "2024-05-06 05:05:05", host: "h3", dir: "data1 data2", tags: []string{"a"}},
	{time: "2024-05-06 05:05:05", host: "h3", dir: "data1 data2"},
}

type fixture struct {
	repo  *restictest.Repo
	snaps []*snapshot.Snapshot
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
	fixtureDir  string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		if err := os.RemoveAll(fixtureDir); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", fixtureDir, err)
		}
	}
	os.Exit(code)
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = buildFixture(context.Background()) })
	restictest.SkipOrFail(t, fixtureErr)
	return fixtureVal
}

func buildFixture(ctx context.Context) (*fixture, error) {
	bin, err := restictest.Lookup()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cairn-forget-")
	if err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	fixtureDir = dir
	for _, d := range []string{"data1", "data2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "file"), []byte(d), 0o644); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	repo, err := restictest.Init(ctx, bin, filepath.Join(dir, "repo"), "cairn-test")
	if err != nil {
		return nil, err
	}

	// Backups run in parallel, each worker on its own clone of the
	// repository (restic 0.14 stalls for many seconds when a lock file of
	// a concurrent command vanishes under it); the clones are merged after.
	const workers = 4
	clones := make([]*restictest.Repo, workers)
	for w := range clones {
		if clones[w], err = repo.Clone(ctx, filepath.Join(dir, fmt.Sprintf("clone%d", w))); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(fixtureSpecs); i += workers {
				s := fixtureSpecs[i]
				args := []string{"backup", "--quiet", "--time", s.time, "--host", s.host}
				for _, tag := range s.tags {
					args = append(args, "--tag", tag)
				}
				for _, d := range strings.Fields(s.dir) {
					args = append(args, filepath.Join(dir, d))
				}
				tz := "TZ=UTC"
				if s.tz != "" {
					tz = "TZ=" + s.tz
				}
				if _, err := clones[w].RunEnv(ctx, []string{tz}, args...); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, c := range clones {
		if errs[w] != nil {
			return nil, fmt.Errorf("fixture: %w", errs[w])
		}
		if err := repo.MergeFrom(ctx, c); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}

	out, err := repo.Run(ctx, "snapshots", "--no-lock", "--json")
	if err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	var js []JSONSnapshot
	if err := json.Unmarshal(out, &js); err != nil {
		return nil, fmt.Errorf("fixture: parse snapshots: %w", err)
	}
	if len(js) != len(fixtureSpecs) {
		return nil, fmt.Errorf("fixture: restic lists %d snapshots, want %d", len(js), len(fixtureSpecs))
	}
	snaps := make([]*snapshot.Snapshot, len(js))
	for i, s := range js {
		if s.ID == nil {
			return nil, fmt.Errorf("fixture: snapshot %d without id", i)
		}
		s.Snapshot.SetID(*s.ID)
		snaps[i] = s.Snapshot
	}
	return &fixture{repo: repo, snaps: snaps}, nil
}

// parseForgetArgs turns forget flags into what cairn's CLI would build.
func parseForgetArgs(t *testing.T, args []string) (Policy, GroupBy, snapshot.Filter) {
	t.Helper()
	var p Policy
	g := DefaultGroupBy
	var f snapshot.Filter
	var keepTags, filterTags []string
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			t.Fatalf("flag %s without value", args[i])
		}
		name, val := args[i], args[i+1]
		count := func(dst *int) {
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatalf("%s %s: %v", name, val, err)
			}
			*dst = n
		}
		dur := func(dst *Duration) {
			if err := dst.Set(val); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		switch name {
		case "--keep-last":
			count(&p.Last)
		case "--keep-hourly":
			count(&p.Hourly)
		case "--keep-daily":
			count(&p.Daily)
		case "--keep-weekly":
			count(&p.Weekly)
		case "--keep-monthly":
			count(&p.Monthly)
		case "--keep-yearly":
			count(&p.Yearly)
		case "--keep-within":
			dur(&p.Within)
		case "--keep-within-hourly":
			dur(&p.WithinHourly)
		case "--keep-within-daily":
			dur(&p.WithinDaily)
		case "--keep-within-weekly":
			dur(&p.WithinWeekly)
		case "--keep-within-monthly":
			dur(&p.WithinMonthly)
		case "--keep-within-yearly":
			dur(&p.WithinYearly)
		case "--keep-tag":
			keepTags = append(keepTags, val)
		case "--group-by":
			if err := g.Set(val); err != nil {
				t.Fatal(err)
			}
		case "--host":
			f.Hosts = append(f.Hosts, val)
		case "--tag":
			filterTags = append(filterTags, val)
		default:
			t.Fatalf("unknown flag %s", name)
		}
	}
	if keepTags != nil {
		p.Tags = snapshot.ParseTagList(keepTags)
	}
	if filterTags != nil {
		f.Tags = snapshot.ParseTagList(filterTags)
	}
	return p, g, f
}

// tieOrders returns every newest-first order of list that differs only in
// how snapshots with equal times are arranged: restic 0.14 may pick any.
func tieOrders(t *testing.T, list []*snapshot.Snapshot) [][]*snapshot.Snapshot {
	t.Helper()
	sorted := sortNewestFirst(list)
	var runs [][]*snapshot.Snapshot
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].Time.Equal(sorted[i].Time) {
			j++
		}
		runs = append(runs, sorted[i:j])
		i = j
	}
	orders := [][]*snapshot.Snapshot{nil}
	for _, run := range runs {
		perms := permutations(run)
		next := make([][]*snapshot.Snapshot, 0, len(orders)*len(perms))
		for _, o := range orders {
			for _, p := range perms {
				next = append(next, append(append([]*snapshot.Snapshot(nil), o...), p...))
			}
		}
		orders = next
		if len(orders) > 10000 {
			t.Fatalf("too many tie orders; reduce equal times in the fixture")
		}
	}
	return orders
}

func permutations(l []*snapshot.Snapshot) [][]*snapshot.Snapshot {
	if len(l) <= 1 {
		return [][]*snapshot.Snapshot{append([]*snapshot.Snapshot(nil), l...)}
	}
	var out [][]*snapshot.Snapshot
	for i := range l {
		rest := make([]*snapshot.Snapshot, 0, len(l)-1)
		rest = append(rest, l[:i]...)
		rest = append(rest, l[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]*snapshot.Snapshot{l[i]}, p...))
		}
	}
	return out
}

// outcome is a canonical description of a keep decision: for each kept
// snapshot its ID, matches and counters, sorted by ID.
func outcome(keep []*core.ID, reasons []KeepReason) string {
	type entry struct {
		ID       string
		Matches  []string
		Counters Counters
	}
	entries := make([]entry, len(keep))
	for i, id := range keep {
		entries[i] = entry{ID: id.Str(), Matches: reasons[i].Matches, Counters: reasons[i].Counters}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	b, err := json.Marshal(entries)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func ids(l []*snapshot.Snapshot) []*core.ID {
	out := make([]*core.ID, len(l))
	for i, sn := range l {
		out[i] = sn.ID()
	}
	return out
}

var differentialPolicies = [][]string{
	{"--keep-last", "1"},
	{"--keep-last", "3"},
	{"--keep-last", "100"},
	{"--keep-hourly", "1"},
	{"--keep-hourly", "6"},
	{"--keep-daily", "3"},
	{"--keep-daily", "12"},
	{"--keep-weekly", "2"},
	{"--keep-weekly", "8"},
	{"--keep-monthly", "3"},
	{"--keep-monthly", "12"},
	{"--keep-yearly", "2"},
	{"--keep-yearly", "10"},
	{"--keep-daily", "7", "--keep-weekly", "5", "--keep-monthly", "12", "--keep-yearly", "75"},
	{"--keep-last", "2", "--keep-hourly", "3", "--keep-daily", "2", "--keep-weekly", "2", "--keep-monthly", "2", "--keep-yearly", "2"},
	{"--keep-within", "1d"},
	{"--keep-within", "2m"},
	{"--keep-within", "1y2m3d4h"},
	{"--keep-within", "17h"},
	{"--keep-within-hourly", "2d"},
	{"--keep-within-daily", "1y"},
	{"--keep-within-weekly", "6m"},
	{"--keep-within-monthly", "2y"},
	{"--keep-within-yearly", "10y"},
	{"--keep-within-daily", "7d", "--keep-within-weekly", "1m", "--keep-within-monthly", "1y", "--keep-within-yearly", "75y"},
	{"--keep-tag", "a"},
	{"--keep-tag", "a,b"},
	{"--keep-tag", "", "--keep-last", "1"},
	{"--keep-tag", "a", "--keep-tag", "b", "--keep-daily", "1"},
	{"--keep-tag", "a", "--keep-within", "1m", "--keep-monthly", "2"},
	{"--keep-last", "2", "--group-by", ""},
	{"--keep-daily", "4", "--group-by", "host"},
	{"--keep-weekly", "3", "--group-by", "paths"},
	{"--keep-last", "1", "--group-by", "tags"},
	{"--keep-monthly", "2", "--group-by", "host,tags"},
	{"--keep-last", "1", "--keep-yearly", "3", "--group-by", "host,paths,tags"},
	{"--keep-daily", "2", "--host", "h2"},
	{"--keep-last", "1", "--tag", "a", "--group-by", ""},
}

func TestDifferentialForget(t *testing.T) {
	fx := getFixture(t)
	ctx := context.Background()
	for _, args := range differentialPolicies {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, err := fx.repo.Run(ctx, append([]string{"forget", "--no-lock", "--dry-run", "--json"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			var got []JSONGroup
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("parse restic output: %v\n%s", err, out)
			}
			p, g, f := parseForgetArgs(t, args)
			var selected []*snapshot.Snapshot
			for _, sn := range fx.snaps {
				if f.Matches(sn) {
					selected = append(selected, sn)
				}
			}
			groups := Group(selected, g)
			ours := make(map[string]SnapshotGroup)
			for _, grp := range groups {
				ours[keyString(grp.Key)] = grp
			}
			if len(got) != len(groups) {
				t.Fatalf("restic has %d groups, cairn %d", len(got), len(groups))
			}
			for _, rg := range got {
				rk := GroupKey{Hostname: rg.Host, Paths: rg.Paths, Tags: rg.Tags}
				grp, ok := ours[keyString(rk)]
				if !ok {
					t.Fatalf("restic group %s not found in cairn's groups", keyString(rk))
				}
				if len(rg.Keep)+len(rg.Remove) != len(grp.Snapshots) {
					t.Fatalf("group %s: restic has %d snapshots, cairn %d", rk, len(rg.Keep)+len(rg.Remove), len(grp.Snapshots))
				}
				if len(rg.Keep) != len(rg.Reasons) {
					t.Fatalf("group %s: restic gives %d reasons for %d kept", rk, len(rg.Reasons), len(rg.Keep))
				}
				rkeep := make([]*core.ID, len(rg.Keep))
				for i, s := range rg.Keep {
					rkeep[i] = s.ID
				}
				want := outcome(rkeep, rg.Reasons)

				// cairn's own deterministic answer must be one restic could give.
				keep, remove, reasons := ApplyAt(grp.Snapshots, p, now)
				if len(keep)+len(remove) != len(grp.Snapshots) {
					t.Fatalf("group %s: Apply lost snapshots", rk)
				}
				allowed := map[string]bool{}
				for _, order := range tieOrders(t, grp.Snapshots) {
					k, _, r := applySorted(order, p, now)
					allowed[outcome(ids(k), r)] = true
				}
				if !allowed[want] {
					t.Errorf("group %s: restic's outcome is not one cairn allows\nrestic: %s\ncairn:  %s", rk, want, outcome(ids(keep), reasons))
				}
				if !allowed[outcome(ids(keep), reasons)] {
					t.Errorf("group %s: Apply result not among tie orders", rk)
				}
				if len(allowed) == 1 && outcome(ids(keep), reasons) != want {
					t.Errorf("group %s: differs from restic\nrestic: %s\ncairn:  %s", rk, want, outcome(ids(keep), reasons))
				}
			}
		})
	}
}

// TestDifferentialTies checks that the fixture really exercises the
// order-dependent cases the tie enumeration exists for.
func TestDifferentialTies(t *testing.T) {
	fx := getFixture(t)
	var ties int
	for _, grp := range Group(fx.snaps, DefaultGroupBy) {
		if n := len(tieOrders(t, grp.Snapshots)); n > 1 {
			ties++
		}
	}
	if ties < 2 {
		t.Fatalf("fixture has equal times in %d groups, want at least 2", ties)
	}
}

// TestDifferentialGroupKeys compares Group with "snapshots --json --group-by".
func TestDifferentialGroupKeys(t *testing.T) {
	fx := getFixture(t)
	ctx := context.Background()
	for _, by := range []string{"host", "paths", "tags", "host,paths", "host,paths,tags"} {
		out, err := fx.repo.Run(ctx, "snapshots", "--no-lock", "--json", "--group-by", by)
		if err != nil {
			t.Fatal(err)
		}
		var got []JSONSnapshotGroup
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("parse: %v", err)
		}
		g, err := ParseGroupBy(by)
		if err != nil {
			t.Fatal(err)
		}
		ours := map[string][]string{}
		for _, grp := range Group(fx.snaps, g) {
			var l []string
			for _, sn := range grp.Snapshots {
				l = append(l, sn.ID().String())
			}
			sort.Strings(l)
			ours[keyString(grp.Key)] = l
		}
		if len(got) != len(ours) {
			t.Fatalf("group-by %q: restic %d groups, cairn %d", by, len(got), len(ours))
		}
		for _, rg := range got {
			var l []string
			for _, s := range rg.Snapshots {
				l = append(l, s.ID.String())
			}
			sort.Strings(l)
			k := keyString(rg.GroupKey)
			if strings.Join(ours[k], ",") != strings.Join(l, ",") {
				t.Errorf("group-by %q key %s: restic %v, cairn %v", by, k, l, ours[k])
			}
		}
	}
}
