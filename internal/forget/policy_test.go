package forget

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// mk builds a snapshot at an RFC 3339 time (or "2006-01-02 15:04:05" UTC)
// with a deterministic ID derived from its index.
func mk(t *testing.T, i int, ts string, tags ...string) *snapshot.Snapshot {
	t.Helper()
	var tm time.Time
	var err error
	if strings.Contains(ts, "T") {
		tm, err = time.Parse(time.RFC3339, ts)
	} else {
		tm, err = time.ParseInLocation("2006-01-02 15:04:05", ts, time.UTC)
	}
	if err != nil {
		t.Fatalf("time %q: %v", ts, err)
	}
	sn := &snapshot.Snapshot{Time: tm, Hostname: "h", Paths: []string{"/p"}, Tags: tags}
	var id core.ID
	id[0] = byte(i >> 8)
	id[1] = byte(i)
	sn.SetID(id)
	return sn
}

var testNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func keptTimes(keep []*snapshot.Snapshot) []string {
	out := make([]string, len(keep))
	for i, sn := range keep {
		out[i] = sn.Time.Format("2006-01-02 15:04:05")
	}
	return out
}

func TestApplyTable(t *testing.T) {
	sundays := []string{
		"2019-09-01 11:00:00", "2019-09-08 11:00:00", "2019-09-15 11:00:00", "2019-09-22 11:00:00",
		"2019-09-29 11:00:00", "2019-10-06 11:00:00", "2019-10-13 11:00:00", "2019-10-20 11:00:00",
		"2019-10-27 11:00:00", "2019-11-03 11:00:00", "2019-11-10 11:00:00", "2019-11-17 11:00:00",
	}
	hours := []string{
		"2024-01-02 03:00:00", "2024-01-02 03:59:59", "2024-01-02 04:00:00", "2024-01-02 04:30:00",
		"2024-01-02 23:59:59", "2024-01-03 00:00:00", "2024-01-03 00:00:01",
	}
	isoWeeks := []string{
		"2020-12-28 08:00:00", // Monday, ISO 2020-53
		"2021-01-01 08:00:00", // Friday, ISO 2020-53
		"2021-01-03 23:59:59", // Sunday, ISO 2020-53
		"2021-01-04 00:00:00", // Monday, ISO 2021-01
		"2024-12-29 12:00:00", // Sunday, ISO 2024-52
		"2024-12-30 12:00:00", // Monday, ISO 2025-01 but calendar year 2024
		"2025-01-05 12:00:00", // Sunday, ISO 2025-01
	}
	tests := []struct {
		name  string
		times []string
		tags  map[int][]string
		p     Policy
		want  []string // kept times, newest first
	}{
		{"doc example keep-daily 4", sundays, nil, Policy{Daily: 4},
			[]string{"2019-11-17 11:00:00", "2019-11-10 11:00:00", "2019-11-03 11:00:00", "2019-10-27 11:00:00"}},
		{"keep-last 3", sundays, nil, Policy{Last: 3},
			[]string{"2019-11-17 11:00:00", "2019-11-10 11:00:00", "2019-11-03 11:00:00"}},
		{"keep-last more than there are", hours[:2], nil, Policy{Last: 10},
			[]string{"2024-01-02 03:59:59", "2024-01-02 03:00:00"}},
		{"keep-monthly 2 of sundays", sundays, nil, Policy{Monthly: 2},
			[]string{"2019-11-17 11:00:00", "2019-10-27 11:00:00"}},
		{"keep-monthly unlimited", sundays, nil, Policy{Monthly: Unlimited},
			[]string{"2019-11-17 11:00:00", "2019-10-27 11:00:00", "2019-09-29 11:00:00"}},
		{"keep-hourly newest of each hour", hours, nil, Policy{Hourly: 4},
			[]string{"2024-01-03 00:00:01", "2024-01-02 23:59:59", "2024-01-02 04:30:00", "2024-01-02 03:59:59"}},
		{"keep-daily splits at midnight", hours, nil, Policy{Daily: 5},
			[]string{"2024-01-03 00:00:01", "2024-01-02 23:59:59"}},
		{"keep-weekly uses ISO weeks", isoWeeks, nil, Policy{Weekly: 10},
			[]string{"2025-01-05 12:00:00", "2024-12-29 12:00:00", "2021-01-04 00:00:00", "2021-01-03 23:59:59"}},
		{"keep-yearly uses calendar years", isoWeeks, nil, Policy{Yearly: 10},
			[]string{"2025-01-05 12:00:00", "2024-12-30 12:00:00", "2021-01-04 00:00:00", "2020-12-28 08:00:00"}},
		{"rules are ORed", sundays, nil, Policy{Last: 1, Monthly: 3},
			[]string{"2019-11-17 11:00:00", "2019-10-27 11:00:00", "2019-09-29 11:00:00"}},
		{"keep-within is strict at the cut-off", hours, nil, Policy{Within: Duration{Hours: 20}},
			[]string{"2024-01-03 00:00:01", "2024-01-03 00:00:00", "2024-01-02 23:59:59", "2024-01-02 04:30:00"}},
		{"keep-within 1m is a calendar month", []string{
			"2024-03-31 12:00:00", "2024-03-02 12:00:01", "2024-03-02 12:00:00", "2024-03-01 12:00:00"}, nil,
			Policy{Within: Duration{Months: 1}},
			// 2024-03-31 minus one month normalises to 2024-03-02 (Go's AddDate, as restic).
			[]string{"2024-03-31 12:00:00", "2024-03-02 12:00:01"}},
		{"keep-within-daily", hours, nil, Policy{WithinDaily: Duration{Days: 1}},
			[]string{"2024-01-03 00:00:01", "2024-01-02 23:59:59"}},
		{"keep-within-hourly", hours, nil, Policy{WithinHourly: Duration{Hours: 20}},
			[]string{"2024-01-03 00:00:01", "2024-01-02 23:59:59", "2024-01-02 04:30:00"}},
		{"keep-within-weekly", isoWeeks, nil, Policy{WithinWeekly: Duration{Years: 5}},
			[]string{"2025-01-05 12:00:00", "2024-12-29 12:00:00", "2021-01-04 00:00:00", "2021-01-03 23:59:59"}},
		{"keep-within-weekly cut-off exactly at a snapshot", isoWeeks, nil, Policy{WithinWeekly: Duration{Years: 4, Days: 1, Hours: 12}},
			[]string{"2025-01-05 12:00:00", "2024-12-29 12:00:00"}},
		{"keep-within-monthly", sundays, nil, Policy{WithinMonthly: Duration{Months: 2}},
			[]string{"2019-11-17 11:00:00", "2019-10-27 11:00:00", "2019-09-29 11:00:00"}},
		{"keep-within-yearly", isoWeeks, nil, Policy{WithinYearly: Duration{Years: 4, Days: 2}},
			[]string{"2025-01-05 12:00:00", "2024-12-30 12:00:00", "2021-01-04 00:00:00"}},
		{"future snapshots do not move the reference point", []string{
			"2099-01-01 00:00:00", "2024-01-02 12:00:00", "2024-01-01 13:00:00", "2024-01-01 11:00:00"}, nil,
			Policy{Within: Duration{Days: 1}},
			[]string{"2099-01-01 00:00:00", "2024-01-02 12:00:00", "2024-01-01 13:00:00"}},
		{"only future snapshots: all within", []string{"2099-01-01 00:00:00", "2031-01-01 00:00:00"}, nil,
			Policy{Within: Duration{Hours: 1}},
			[]string{"2099-01-01 00:00:00", "2031-01-01 00:00:00"}},
		{"keep-tag needs every tag of a group", sundays[:4], map[int][]string{0: {"a"}, 1: {"a", "b"}, 2: {"b", "a", "c"}},
			Policy{Tags: snapshot.TagList{{"a", "b"}}},
			[]string{"2019-09-15 11:00:00", "2019-09-08 11:00:00"}},
		{"keep-tag groups are ORed", sundays[:4], map[int][]string{0: {"a"}, 1: {"b"}, 3: {"c"}},
			Policy{Tags: snapshot.TagList{{"a"}, {"c"}}},
			[]string{"2019-09-22 11:00:00", "2019-09-01 11:00:00"}},
		{"keep-tag empty group keeps untagged", sundays[:4], map[int][]string{0: {"a"}, 3: {"c"}},
			Policy{Tags: snapshot.TagList{{}}},
			[]string{"2019-09-15 11:00:00", "2019-09-08 11:00:00"}},
		{"keep-tag leading empty tag matches untagged (0.14 quirk)", sundays[:3], map[int][]string{0: {"a"}},
			Policy{Tags: snapshot.TagList{{"", "a"}}},
			[]string{"2019-09-15 11:00:00", "2019-09-08 11:00:00"}},
		{"keep-tag trailing empty tag never matches (0.14 quirk)", sundays[:3], map[int][]string{0: {"a"}},
			Policy{Tags: snapshot.TagList{{"a", ""}}},
			nil},
		{"keep-tag that matches nothing removes all", sundays[:3], nil,
			Policy{Tags: snapshot.TagList{{"zz"}}}, nil},
		{"empty policy keeps all", sundays[:2], nil, Policy{},
			[]string{"2019-09-08 11:00:00", "2019-09-01 11:00:00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var list []*snapshot.Snapshot
			for i, ts := range tc.times {
				list = append(list, mk(t, i, ts, tc.tags[i]...))
			}
			keep, remove, reasons := ApplyAt(list, tc.p, testNow)
			if got := keptTimes(keep); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
			if len(keep)+len(remove) != len(list) {
				t.Fatalf("keep %d + remove %d != %d", len(keep), len(remove), len(list))
			}
			if len(reasons) != len(keep) {
				t.Fatalf("%d reasons for %d kept", len(reasons), len(keep))
			}
			for i := range keep {
				if reasons[i].Snapshot != keep[i] || len(reasons[i].Matches) == 0 {
					t.Fatalf("reason %d does not describe keep[%d]: %+v", i, i, reasons[i])
				}
			}
			for i := 1; i < len(remove); i++ {
				if remove[i].Time.After(remove[i-1].Time) {
					t.Fatalf("remove not newest first")
				}
			}
		})
	}
}

func TestApplyReasonsAndCounters(t *testing.T) {
	list := []*snapshot.Snapshot{
		mk(t, 0, "2024-01-01 10:00:00"),
		mk(t, 1, "2024-01-01 11:00:00", "a"),
		mk(t, 2, "2024-01-01 11:30:00", "a", "b"),
		mk(t, 3, "2024-01-02 10:00:00"),
		mk(t, 4, "2024-01-03 10:00:00", "b"),
	}
	p := Policy{Last: 1, Daily: 2, Weekly: Unlimited, Within: Duration{Days: 1},
		WithinHourly: Duration{Years: 1, Months: 2}, WithinDaily: Duration{Days: 2},
		Tags: snapshot.TagList{{"a"}}}
	_, _, reasons := ApplyAt(list, p, testNow)
	type r struct {
		time     string
		matches  []string
		counters Counters
	}
	want := []r{
		{"2024-01-03 10:00:00", []string{"within 1d", "last snapshot", "daily snapshot", "weekly snapshot", "hourly within 1y2m", "daily within 2d"},
			Counters{Daily: 1, Weekly: -1}},
		{"2024-01-02 10:00:00", []string{"daily snapshot", "hourly within 1y2m", "daily within 2d"}, Counters{Weekly: -1}},
		{"2024-01-01 11:30:00", []string{"has tags [a]", "hourly within 1y2m", "daily within 2d"}, Counters{Weekly: -1}},
		{"2024-01-01 11:00:00", []string{"has tags [a]"}, Counters{Weekly: -1}},
		{"2024-01-01 10:00:00", []string{"hourly within 1y2m"}, Counters{Weekly: -1}},
	}
	if len(reasons) != len(want) {
		t.Fatalf("got %d reasons, want %d", len(reasons), len(want))
	}
	for i, w := range want {
		got := reasons[i]
		if got.Snapshot.Time.Format("2006-01-02 15:04:05") != w.time || !reflect.DeepEqual(got.Matches, w.matches) || got.Counters != w.counters {
			t.Errorf("reason %d = %s %q %+v, want %s %q %+v", i, got.Snapshot.Time, got.Matches, got.Counters, w.time, w.matches, w.counters)
		}
	}
}

func TestApplyEmptyPolicyReason(t *testing.T) {
	list := []*snapshot.Snapshot{mk(t, 0, "2024-01-01 10:00:00")}
	keep, remove, reasons := ApplyAt(list, Policy{}, testNow)
	if len(keep) != 1 || len(remove) != 0 || !reflect.DeepEqual(reasons[0].Matches, []string{"policy is empty"}) {
		t.Fatalf("got %v %v %+v", keep, remove, reasons)
	}
	if k, r, rs := ApplyAt(nil, Policy{Last: 1}, testNow); k != nil || r != nil || rs != nil {
		t.Fatal("empty list must give nothing")
	}
}

func TestApplyTiesAreDeterministic(t *testing.T) {
	a := mk(t, 2, "2024-01-01 10:00:00", "x")
	b := mk(t, 1, "2024-01-01 10:00:00")
	c := mk(t, 3, "2024-01-01 09:00:00")
	for _, in := range [][]*snapshot.Snapshot{{a, b, c}, {b, a, c}, {c, a, b}} {
		orig := append([]*snapshot.Snapshot(nil), in...)
		keep, _, _ := ApplyAt(in, Policy{Last: 1}, testNow)
		if len(keep) != 1 || keep[0] != b {
			t.Fatalf("keep-last 1 with a tie kept %v, want the lower ID %v", keep, b)
		}
		if !reflect.DeepEqual(in, orig) {
			t.Fatal("Apply reordered its input")
		}
	}
	// Without IDs the input order decides.
	x := &snapshot.Snapshot{Time: a.Time}
	y := &snapshot.Snapshot{Time: a.Time}
	keep, _, _ := ApplyAt([]*snapshot.Snapshot{y, x}, Policy{Daily: 1}, testNow)
	if keep[0] != y {
		t.Fatal("ties without IDs must keep input order")
	}
}

func TestApplyZonesUseRecordedWallClock(t *testing.T) {
	// The same instant, recorded in two zones, falls on two different days.
	berlin := mk(t, 0, "2024-01-01T00:30:00+01:00")
	utc := mk(t, 1, "2023-12-31T23:30:00Z")
	keep, _, _ := ApplyAt([]*snapshot.Snapshot{berlin, utc}, Policy{Daily: 5}, testNow)
	if len(keep) != 2 {
		t.Fatalf("kept %d, want both (different local days)", len(keep))
	}
	keep, _, _ = ApplyAt([]*snapshot.Snapshot{berlin, utc}, Policy{Yearly: 5}, testNow)
	if len(keep) != 2 {
		t.Fatalf("kept %d, want both (different local years)", len(keep))
	}
	keep, _, _ = ApplyAt([]*snapshot.Snapshot{berlin, utc}, Policy{Hourly: 5}, testNow)
	if len(keep) != 2 {
		t.Fatalf("kept %d hourly", len(keep))
	}
}

func TestApplyHundredYears(t *testing.T) {
	// restic's documentation: one backup a day for 100 years and
	// --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 keeps
	// 7 daily, 4 more weekly, 11 or 12 monthly and 74 or 75 yearly snapshots
	// (when the newest falls on a Sunday, so the dailies hold one week end).
	var list []*snapshot.Snapshot
	end := time.Date(2024, 12, 29, 12, 0, 0, 0, time.UTC) // a Sunday
	for i := 0; i < 36525; i++ {
		list = append(list, &snapshot.Snapshot{Time: end.AddDate(0, 0, -i)})
	}
	keep, _, _ := ApplyAt(list, Policy{Daily: 7, Weekly: 5, Monthly: 12, Yearly: 75}, testNow)
	if n := len(keep); n < 7+4+11+74 || n > 7+4+12+75 {
		t.Fatalf("kept %d snapshots", n)
	}
	keep, _, _ = ApplyAt(list, Policy{Daily: Unlimited}, testNow)
	if len(keep) != len(list) {
		t.Fatalf("unlimited daily kept %d of %d", len(keep), len(list))
	}
}

func TestPolicyString(t *testing.T) {
	// Strings as printed by restic 0.14 ("Applying Policy: ...").
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{Last: 1, Hourly: 2, Daily: 3, Weekly: 4, Monthly: 5, Yearly: 6,
			Within: Duration{Days: 1}, WithinHourly: Duration{Hours: 1}, WithinDaily: Duration{Days: 1},
			WithinWeekly: Duration{Months: 1}, WithinMonthly: Duration{Years: 1}, WithinYearly: Duration{Years: 2},
			Tags: snapshot.TagList{{"a", "b"}, {"c"}}},
			"keep 1 latest, 2 hourly, 3 daily, 4 weekly, 5 monthly, 6 yearly snapshots, hourly snapshots within 1h, daily snapshots within 1d, weekly snapshots within 1m, monthly snapshots within 1y, yearly snapshots within 2y and all snapshots with tags [[a, b] [c]] and all snapshots within 1d of the newest"},
		{Policy{Within: Duration{Days: 1}}, "keep all snapshots within 1d of the newest"},
		{Policy{Daily: 10}, "keep 10 daily snapshots"},
		{Policy{Last: 1}, "keep 1 latest snapshots"},
		{Policy{Hourly: 2, Tags: snapshot.TagList{{}}}, "keep 2 hourly snapshots and all snapshots with tags [[]]"},
		{Policy{Tags: snapshot.TagList{{"a"}, {}}}, "keep all snapshots with tags [[a] []]"},
		{Policy{Tags: snapshot.TagList{{"x"}}, Within: Duration{Days: 1}}, "keep all snapshots with tags [[x]] and all snapshots within 1d of the newest"},
		{Policy{WithinHourly: Duration{Years: 1, Months: 2}, WithinDaily: Duration{Days: 2}, Tags: snapshot.TagList{{"a"}}},
			"keep hourly snapshots within 1y2m, daily snapshots within 2d and all snapshots with tags [[a]]"},
		{Policy{Last: Unlimited, Daily: 2}, "keep all latest, 2 daily snapshots"},
		{Policy{}, "keep "},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() =\n%q\nwant\n%q", got, tc.want)
		}
	}
}

func TestPolicyEmptyAndValidate(t *testing.T) {
	if !(Policy{}).Empty() {
		t.Fatal("zero policy not empty")
	}
	for _, p := range []Policy{{Last: 1}, {Yearly: Unlimited}, {Within: Duration{Hours: 1}},
		{WithinYearly: Duration{Years: 1}}, {Tags: snapshot.TagList{{}}}, {Last: -2}} {
		if p.Empty() {
			t.Errorf("%+v reported empty", p)
		}
	}
	for _, p := range []Policy{{}, {Last: Unlimited, Daily: 3}, {Within: Duration{Years: 1}}} {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", p, err)
		}
	}
	for _, p := range []Policy{{Last: -2}, {Monthly: -5}, {Within: Duration{Days: -1}},
		{WithinDaily: Duration{Years: 1, Months: -2}}} {
		err := p.Validate()
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidPolicy", p, err)
		}
	}
}

func TestKeepReasonJSON(t *testing.T) {
	sn := mk(t, 0, "2024-01-02T03:04:05Z")
	kr := KeepReason{Snapshot: sn, Matches: []string{"last snapshot"}, Counters: Counters{Daily: 1, Weekly: -1}}
	b, err := json.Marshal(kr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"snapshot":{"time":"2024-01-02T03:04:05Z","tree":null,"paths":["/p"],"hostname":"h"},"matches":["last snapshot"],"counters":{"daily":1,"weekly":-1}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Counters{})
	if string(b) != "{}" {
		t.Fatalf("zero counters = %s", b)
	}
}

func ExamplePolicy_String() {
	p := Policy{Daily: 7, Weekly: 4, WithinMonthly: Duration{Years: 1}}
	fmt.Println(p.String())
	// Output: keep 7 daily, 4 weekly snapshots, monthly snapshots within 1y
}

// FuzzApply checks invariants on random snapshot sets: keep and remove
// partition the input, reasons line up with keep, and raising a count or
// widening a duration never drops a snapshot that was kept.
func FuzzApply(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, uint8(1), uint8(2), uint8(0), uint8(3))
	f.Add([]byte{0, 0, 0, 0, 255, 255, 255, 255, 7, 7, 7, 7}, uint8(0), uint8(0), uint8(4), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, last, daily, weekly, within uint8) {
		base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		var list []*snapshot.Snapshot
		for i := 0; i+3 < len(data) && len(list) < 64; i += 4 {
			// Up to ~2 years of hours, with collisions likely.
			h := (int(data[i])<<8 | int(data[i+1])) % 20000
			sn := &snapshot.Snapshot{Time: base.Add(time.Duration(h) * time.Hour)}
			if data[i+2]&1 == 1 {
				sn.Tags = []string{"a"}
			}
			var id core.ID
			id[0], id[1] = byte(len(list)>>8), byte(len(list))
			id[2] = data[i+3]
			sn.SetID(id)
			list = append(list, sn)
		}
		p := Policy{Last: int(last % 8), Daily: int(daily % 8), Weekly: int(weekly % 8),
			WithinMonthly: Duration{Months: int(within % 16)}}
		keep, remove, reasons := ApplyAt(list, p, testNow)
		if len(keep)+len(remove) != len(list) || len(reasons) != len(keep) {
			t.Fatalf("partition broken: %d + %d != %d, %d reasons", len(keep), len(remove), len(list), len(reasons))
		}
		seen := map[*snapshot.Snapshot]bool{}
		for i, sn := range keep {
			if seen[sn] || reasons[i].Snapshot != sn {
				t.Fatal("keep has duplicates or misaligned reasons")
			}
			seen[sn] = true
		}
		for _, sn := range remove {
			if seen[sn] {
				t.Fatal("snapshot both kept and removed")
			}
			seen[sn] = true
		}
		if p.Empty() {
			return
		}
		wider := p
		wider.Last++
		wider.Daily++
		wider.Weekly++
		wider.WithinMonthly.Months++
		keep2, _, _ := ApplyAt(list, wider, testNow)
		kept2 := map[*snapshot.Snapshot]bool{}
		for _, sn := range keep2 {
			kept2[sn] = true
		}
		for _, sn := range keep {
			if !kept2[sn] {
				t.Fatalf("widening %+v to %+v dropped %v", p, wider, sn.Time)
			}
		}
	})
}
