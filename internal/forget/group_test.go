package forget

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

func TestParseGroupBy(t *testing.T) {
	tests := []struct {
		in      string
		want    GroupBy
		canon   string
		wantErr bool
	}{
		{"", GroupBy{}, "", false},
		{",", GroupBy{}, "", false},
		{"host,paths", DefaultGroupBy, "host,paths", false},
		{"host,paths,tags", GroupBy{true, true, true}, "host,paths,tags", false},
		{"tags,host", GroupBy{Host: true, Tags: true}, "host,tags", false},
		{"host,,paths", DefaultGroupBy, "host,paths", false},
		{"host,host", GroupBy{Host: true}, "host", false},
		{"hosts", GroupBy{Host: true}, "host", false},
		{"path", GroupBy{Paths: true}, "paths", false},
		{"tag", GroupBy{Tags: true}, "tags", false},
		{"foo", GroupBy{}, "", true},
		{" host", GroupBy{}, "", true},
		{"Host", GroupBy{}, "", true},
		{"hostname", GroupBy{}, "", true},
	}
	for _, tc := range tests {
		got, err := ParseGroupBy(tc.in)
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "unknown grouping option") {
				t.Errorf("ParseGroupBy(%q) error = %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.canon {
			t.Errorf("ParseGroupBy(%q) = %+v %q, %v; want %+v %q", tc.in, got, got.String(), err, tc.want, tc.canon)
		}
	}
	var g GroupBy
	if err := g.Set("paths"); err != nil || g != (GroupBy{Paths: true}) || g.Type() != "group" {
		t.Fatalf("Set: %+v %v", g, err)
	}
}

func TestGroup(t *testing.T) {
	tm := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	s1 := &snapshot.Snapshot{Time: tm, Hostname: "b", Paths: []string{"/y", "/x"}, Tags: []string{"t2", "t1"}}
	s2 := &snapshot.Snapshot{Time: tm, Hostname: "a", Paths: []string{"/x"}}
	s3 := &snapshot.Snapshot{Time: tm, Hostname: "b", Paths: []string{"/x", "/y"}, Tags: []string{"t1", "t2"}}
	s4 := &snapshot.Snapshot{Time: tm, Hostname: "b", Paths: []string{"/x", "/y"}}
	list := []*snapshot.Snapshot{s1, s2, s3, s4}

	groups := Group(list, GroupBy{})
	if len(groups) != 1 || !reflect.DeepEqual(groups[0].Snapshots, list) || !reflect.DeepEqual(groups[0].Key, GroupKey{}) {
		t.Fatalf("no grouping: %+v", groups)
	}

	groups = Group(list, DefaultGroupBy)
	if len(groups) != 2 {
		t.Fatalf("host,paths: %d groups", len(groups))
	}
	if groups[0].Key.Hostname != "a" || !reflect.DeepEqual(groups[1].Key, GroupKey{Hostname: "b", Paths: []string{"/x", "/y"}}) {
		t.Fatalf("keys %+v %+v", groups[0].Key, groups[1].Key)
	}
	if !reflect.DeepEqual(groups[1].Snapshots, []*snapshot.Snapshot{s1, s3, s4}) {
		t.Fatal("snapshots must stay in input order within a group")
	}

	groups = Group(list, GroupBy{Tags: true})
	if len(groups) != 2 || groups[0].Key.Tags != nil || !reflect.DeepEqual(groups[1].Key.Tags, []string{"t1", "t2"}) {
		t.Fatalf("tags: %+v", groups)
	}
	if !reflect.DeepEqual(s1.Tags, []string{"t2", "t1"}) || !reflect.DeepEqual(s1.Paths, []string{"/y", "/x"}) {
		t.Fatal("Group modified a snapshot")
	}

	b, err := json.Marshal(GroupKey{Hostname: "h"})
	if err != nil || string(b) != `{"hostname":"h","paths":null,"tags":null}` {
		t.Fatalf("key JSON %s %v", b, err)
	}
	if s := (GroupKey{Hostname: "h", Paths: []string{"/p"}, Tags: []string{"a"}}).String(); s != "host h, paths [/p], tags [a]" {
		t.Fatalf("key String %q", s)
	}
}

func TestApplyGroupsAndJSON(t *testing.T) {
	var id1, id2 core.ID
	id1[0], id2[0] = 1, 2
	tree := core.ID{9}
	s1 := &snapshot.Snapshot{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Tree: &tree, Paths: []string{"/d"}, Hostname: "h1", Username: "root", Tags: []string{"a"}}
	s1.SetID(id1)
	s2 := &snapshot.Snapshot{Time: time.Date(2024, 1, 1, 3, 4, 5, 0, time.UTC), Tree: &tree, Paths: []string{"/d"}, Hostname: "h1", Username: "root"}
	s2.SetID(id2)
	res := ApplyGroups([]*snapshot.Snapshot{s2, s1}, DefaultGroupBy, Policy{Last: 1}, testNow)
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	out, err := json.Marshal([]JSONGroup{res[0].JSON()})
	if err != nil {
		t.Fatal(err)
	}
	// The shape restic 0.14 prints for "forget --json --keep-last 1".
	want := `[{"tags":null,"host":"h1","paths":["/d"],` +
		`"keep":[{"time":"2024-01-02T03:04:05Z","tree":"` + tree.String() + `","paths":["/d"],"hostname":"h1","username":"root","tags":["a"],"id":"` + id1.String() + `","short_id":"01000000"}],` +
		`"remove":[{"time":"2024-01-01T03:04:05Z","tree":"` + tree.String() + `","paths":["/d"],"hostname":"h1","username":"root","id":"` + id2.String() + `","short_id":"02000000"}],` +
		`"reasons":[{"snapshot":{"time":"2024-01-02T03:04:05Z","tree":"` + tree.String() + `","paths":["/d"],"hostname":"h1","username":"root","tags":["a"]},"matches":["last snapshot"],"counters":{}}]}]`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}

	// Nothing kept: keep and reasons are null, as in restic.
	res = ApplyGroups([]*snapshot.Snapshot{s2}, GroupBy{}, Policy{Tags: snapshot.TagList{{"zz"}}}, testNow)
	out, err = json.Marshal(res[0].JSON())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), `{"tags":null,"host":"","paths":null,"keep":null,"remove":[`) || !strings.HasSuffix(string(out), `"reasons":null}`) {
		t.Fatalf("got %s", out)
	}

	// JSONSnapshot decodes restic's snapshots --json entries.
	var js JSONSnapshot
	if err := json.Unmarshal([]byte(`{"time":"2024-01-02T03:04:05+01:00","tree":"`+tree.String()+`","paths":["/d"],"hostname":"h","id":"`+id1.String()+`","short_id":"01000000"}`), &js); err != nil {
		t.Fatal(err)
	}
	if js.Snapshot == nil || js.ID == nil || *js.ID != id1 || js.Hostname != "h" {
		t.Fatalf("decoded %+v", js)
	}
	if _, off := js.Time.Zone(); off != 3600 {
		t.Fatalf("zone offset %d lost", off)
	}
	noID := NewJSONSnapshot(&snapshot.Snapshot{})
	if noID.ID != nil || noID.ShortID != "" {
		t.Fatal("snapshot without ID must print id null")
	}
	grp := Group([]*snapshot.Snapshot{s1}, GroupBy{Host: true})[0].JSON()
	out, err = json.Marshal(grp)
	if err != nil || !strings.HasPrefix(string(out), `{"group_key":{"hostname":"h1","paths":null,"tags":null},"snapshots":[{"time"`) {
		t.Fatalf("snapshot group JSON %s %v", out, err)
	}
}

func FuzzParseGroupBy(f *testing.F) {
	for _, s := range []string{"", "host,paths", "tags,,host", "foo", "hosts,path,tag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGroupBy(s)
		if err != nil {
			return
		}
		back, err := ParseGroupBy(g.String())
		if err != nil || back != g {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, g, g.String(), back, err)
		}
	})
}
