package prune

import (
	"context"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func blobSet(tp core.BlobType, ids ...core.ID) core.BlobSet {
	s := core.NewBlobSet()
	for _, id := range ids {
		s.Insert(core.BlobHandle{ID: id, Type: tp})
	}
	return s
}

func union(sets ...core.BlobSet) core.BlobSet {
	out := core.NewBlobSet()
	for _, s := range sets {
		for h := range s {
			out.Insert(h)
		}
	}
	return out
}

func sameBlobSet(t *testing.T, what string, got, want core.BlobSet) {
	t.Helper()
	for h := range want {
		if !got.Has(h) {
			t.Errorf("%s: %v missing", what, h)
		}
	}
	for h := range got {
		if !want.Has(h) {
			t.Errorf("%s: %v not expected", what, h)
		}
	}
}

// TestUsedBlobs pins the used set: every tree reachable from the given
// snapshots (subtrees included) and every data blob of their files, and
// nothing that only a forgotten snapshot references.
func TestUsedBlobs(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	r := s.open()
	keepWant := union(blobSet(core.TreeBlob, s.t1, s.u1), blobSet(core.DataBlob, s.a1, s.a2, s.m1))

	snaps, errs, err := r.LoadAllSnapshots(ctx)
	if err != nil || len(errs) > 0 || len(snaps) != 1 {
		t.Fatalf("snapshots: %d, %v %v", len(snaps), err, errs)
	}
	used, err := UsedBlobs(ctx, r, snaps)
	if err != nil {
		t.Fatal(err)
	}
	sameBlobSet(t, "after forgetting a snapshot", used, keepWant)

	// with the forgotten snapshot's tree as well
	gone := *snaps[0]
	gone.Tree = &s.t2
	used, err = UsedBlobs(ctx, r, []*snapshot.Snapshot{snaps[0], &gone})
	if err != nil {
		t.Fatal(err)
	}
	sameBlobSet(t, "both snapshots", used, union(keepWant, blobSet(core.TreeBlob, s.t2), blobSet(core.DataBlob, s.g1, s.g2, s.m2)))

	used, err = UsedBlobs(ctx, r, nil)
	if err != nil || len(used) != 0 {
		t.Errorf("no snapshots: %v, %v", used, err)
	}
}

// TestUsedBlobsSharedAndDeep walks a deep chain of directories and
// subtrees shared by several parents and snapshots.
func TestUsedBlobsSharedAndDeep(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	r := e.open()
	d := e.saveData(r, false, 30, 31, 32)
	leaf := e.saveTree(r, fileNode("empty", core.IDs{}), fileNode("f", core.IDs{d[0], d[1]}))
	want := union(blobSet(core.TreeBlob, leaf), blobSet(core.DataBlob, d[0], d[1]))
	cur := leaf
	for i := 0; i < 40; i++ {
		cur = e.saveTree(r, dirNode("a", leaf), dirNode("b", cur), fileNode("c", core.IDs{d[2]}))
		want.Insert(core.BlobHandle{ID: cur, Type: core.TreeBlob})
	}
	want.Insert(core.BlobHandle{ID: d[2], Type: core.DataBlob})
	e.flush(r)
	root := cur
	var snaps []*snapshot.Snapshot
	for i := 0; i < 3; i++ {
		sn, err := r.LoadSnapshot(ctx, e.snapshot(r, root))
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, sn)
	}
	used, err := UsedBlobs(ctx, r, snaps)
	if err != nil {
		t.Fatal(err)
	}
	sameBlobSet(t, "deep", used, want)
	sameBlobSet(t, "check walk", e.checkRepo(), want)
}

// TestUsedBlobsErrors pins that an incomplete walk is an error, never a
// smaller used set: a missing tree, and a directory without a subtree.
func TestUsedBlobsErrors(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	r := e.open()
	d := e.saveData(r, false, 40)
	ok := e.saveTree(r, fileNode("f", d))
	missing := core.Hash([]byte("not a stored tree"))
	withMissing := e.saveTree(r, dirNode("m", missing), fileNode("z", d))
	noSub := e.saveTree(r, &tree.Node{Name: "d", Type: tree.NodeDir, Mode: 0o755, ModTime: mtime})
	e.flush(r)
	mk := func(root core.ID) *snapshot.Snapshot {
		sn, err := r.LoadSnapshot(ctx, e.snapshot(r, root))
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	good := mk(ok)
	for _, c := range []struct {
		name string
		root core.ID
	}{{"missing subtree", withMissing}, {"dir without subtree", noSub}, {"missing root", missing}} {
		sn := *good
		root := c.root
		sn.Tree = &root
		if used, err := UsedBlobs(ctx, r, []*snapshot.Snapshot{good, &sn}); err == nil {
			t.Errorf("%s: no error (used set of %d)", c.name, len(used))
		}
	}
	// prune refuses on such a snapshot
	e.snapshot(r, withMissing)
	if _, err := Mark(ctx, e.open(), nil, repackAll, t0); err == nil {
		t.Error("mark ran although a tree is missing")
	}
	if _, err := Sweep(ctx, e.open(), nil, 0, t0, false); err == nil {
		t.Error("sweep ran although a tree is missing")
	}
	if _, err := Exclusive(ctx, e.open(), nil, repackAll); err == nil {
		t.Error("exclusive ran although a tree is missing")
	}
}
