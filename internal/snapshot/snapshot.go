// Package snapshot defines the snapshot record (restic's JSON shape) and the
// selection helpers shared by the commands.
package snapshot

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// Snapshot is one backup: the root tree plus who, when and what.
// Field order and JSON names follow restic's on-disk format exactly.
type Snapshot struct {
	Time           time.Time `json:"time"`
	Parent         *core.ID  `json:"parent,omitempty"`
	Tree           *core.ID  `json:"tree"`
	Paths          []string  `json:"paths"`
	Hostname       string    `json:"hostname,omitempty"`
	Username       string    `json:"username,omitempty"`
	UID            uint32    `json:"uid,omitempty"`
	GID            uint32    `json:"gid,omitempty"`
	Excludes       []string  `json:"excludes,omitempty"`
	Tags           []string  `json:"tags,omitempty"`
	Original       *core.ID  `json:"original,omitempty"`
	ProgramVersion string    `json:"program_version,omitempty"`
	Summary        *Summary  `json:"summary,omitempty"`

	id *core.ID // the file ID, set when loaded or saved; not serialised
}

// Summary holds the statistics of the backup that made a snapshot.
type Summary struct {
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
	FilesNew            uint      `json:"files_new"`
	FilesChanged        uint      `json:"files_changed"`
	FilesUnmodified     uint      `json:"files_unmodified"`
	DirsNew             uint      `json:"dirs_new"`
	DirsChanged         uint      `json:"dirs_changed"`
	DirsUnmodified      uint      `json:"dirs_unmodified"`
	DataBlobs           int       `json:"data_blobs"`
	TreeBlobs           int       `json:"tree_blobs"`
	DataAdded           uint64    `json:"data_added"`
	DataAddedPacked     uint64    `json:"data_added_packed"`
	TotalFilesProcessed uint      `json:"total_files_processed"`
	TotalBytesProcessed uint64    `json:"total_bytes_processed"`
}

// New returns a snapshot for paths taken at t, filled with the current
// user and host (hostname may be overridden by the caller).
func New(paths []string, tags []string, hostname string, t time.Time) (*Snapshot, error) {
	abs := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("snapshot path %q: %w", p, err)
		}
		abs = append(abs, a)
	}
	sort.Strings(abs)
	sn := &Snapshot{Time: t, Paths: abs, Hostname: hostname, Tags: tags}
	if sn.Hostname == "" {
		h, err := os.Hostname()
		if err == nil {
			sn.Hostname = h
		}
	}
	if u, err := user.Current(); err == nil {
		sn.Username = u.Username
	}
	sn.UID = uint32(os.Getuid())
	sn.GID = uint32(os.Getgid())
	return sn, nil
}

// ID returns the snapshot's file ID (nil if it was never loaded or saved).
func (sn *Snapshot) ID() *core.ID { return sn.id }

// SetID records the snapshot's file ID.
func (sn *Snapshot) SetID(id core.ID) { sn.id = &id }

// HasTags reports whether sn carries every tag in l.
func (sn *Snapshot) HasTags(l []string) bool {
	for _, t := range l {
		found := false
		for _, st := range sn.Tags {
			if st == t {
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

// TagList is an OR of AND-groups of tags ("a,b" means a and b), as in
// restic's --tag flag.
type TagList [][]string

// ParseTagList parses repeated --tag values ("a,b" means both).
func ParseTagList(values []string) TagList {
	var out TagList
	for _, v := range values {
		var group []string
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				group = append(group, t)
			}
		}
		out = append(out, group)
	}
	return out
}

// HasTagList reports whether sn matches any AND-group of l (an empty list
// matches everything; an empty group matches snapshots with no tags).
func (sn *Snapshot) HasTagList(l TagList) bool {
	if len(l) == 0 {
		return true
	}
	for _, group := range l {
		if len(group) == 0 && len(sn.Tags) == 0 {
			return true
		}
		if len(group) > 0 && sn.HasTags(group) {
			return true
		}
	}
	return false
}

// HasPaths reports whether sn contains every path in paths.
func (sn *Snapshot) HasPaths(paths []string) bool {
	for _, p := range paths {
		found := false
		for _, sp := range sn.Paths {
			if sp == p {
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

// HasHostname reports whether sn's host is one of hosts (or hosts is empty).
func (sn *Snapshot) HasHostname(hosts []string) bool {
	if len(hosts) == 0 {
		return true
	}
	for _, h := range hosts {
		if sn.Hostname == h {
			return true
		}
	}
	return false
}

// Filter selects snapshots by host, tags and paths, as restic's
// --host/--tag/--path flags.
type Filter struct {
	Hosts []string
	Tags  TagList
	Paths []string
}

// Matches reports whether sn passes f.
func (f Filter) Matches(sn *Snapshot) bool {
	return sn.HasHostname(f.Hosts) && sn.HasTagList(f.Tags) && sn.HasPaths(f.Paths)
}

// SortByTime sorts snapshots oldest first (ties by ID for a stable order).
func SortByTime(l []*Snapshot) {
	sort.SliceStable(l, func(i, j int) bool {
		if !l[i].Time.Equal(l[j].Time) {
			return l[i].Time.Before(l[j].Time)
		}
		if l[i].id != nil && l[j].id != nil {
			return l[i].id.String() < l[j].id.String()
		}
		return false
	})
}

func (sn *Snapshot) String() string {
	id := "new"
	if sn.id != nil {
		id = sn.id.Str()
	}
	return fmt.Sprintf("snapshot %s of %v at %s by %s@%s", id, sn.Paths, sn.Time.Format(time.RFC3339), sn.Username, sn.Hostname)
}
