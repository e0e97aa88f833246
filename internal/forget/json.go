package forget

import (
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// JSONSnapshot is a snapshot as restic prints it in "snapshots --json" and
// "forget --json": the stored fields followed by "id" and "short_id".
type JSONSnapshot struct {
	*snapshot.Snapshot
	ID      *core.ID `json:"id"`
	ShortID string   `json:"short_id"`
}

// NewJSONSnapshot wraps sn with its ID (null when it has none).
func NewJSONSnapshot(sn *snapshot.Snapshot) JSONSnapshot {
	js := JSONSnapshot{Snapshot: sn}
	if id := sn.ID(); id != nil {
		v := *id
		js.ID = &v
		js.ShortID = id.Str()
	}
	return js
}

// JSONGroup is one element of restic's "forget --json" output array.
// Fields not grouped by are empty ("host": "", "paths": null, "tags": null),
// and empty lists are null, as restic prints them.
type JSONGroup struct {
	Tags    []string       `json:"tags"`
	Host    string         `json:"host"`
	Paths   []string       `json:"paths"`
	Keep    []JSONSnapshot `json:"keep"`
	Remove  []JSONSnapshot `json:"remove"`
	Reasons []KeepReason   `json:"reasons"`
}

func jsonSnapshots(l []*snapshot.Snapshot) []JSONSnapshot {
	if len(l) == 0 {
		return nil
	}
	out := make([]JSONSnapshot, len(l))
	for i, sn := range l {
		out[i] = NewJSONSnapshot(sn)
	}
	return out
}

// JSON converts r to restic's forget --json group shape.
func (r Result) JSON() JSONGroup {
	var reasons []KeepReason
	if len(r.Reasons) > 0 {
		reasons = r.Reasons
	}
	return JSONGroup{
		Tags:    r.Key.Tags,
		Host:    r.Key.Hostname,
		Paths:   r.Key.Paths,
		Keep:    jsonSnapshots(r.Keep),
		Remove:  jsonSnapshots(r.Remove),
		Reasons: reasons,
	}
}

// JSONSnapshotGroup is one element of restic's "snapshots --json
// --group-by" output.
type JSONSnapshotGroup struct {
	GroupKey  GroupKey       `json:"group_key"`
	Snapshots []JSONSnapshot `json:"snapshots"`
}

// JSON converts g to restic's snapshots --json --group-by shape.
func (g SnapshotGroup) JSON() JSONSnapshotGroup {
	return JSONSnapshotGroup{GroupKey: g.Key, Snapshots: jsonSnapshots(g.Snapshots)}
}
