package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// These tests check the order of the durability steps (hazard H21,
// invariant I11): write the temporary file, fsync it, rename it to its
// final name, fsync the directory, and only then report success. They
// record the steps through the backend's seams (fsyncFile, fsyncDir and the
// publish strategies) together with what the file system held at each step.

// step is one recorded durability step.
type step struct {
	op   string // "fsync-file", "publish" or "fsync-dir"
	path string // the file synced, the final name published, or the directory synced
	from string // publish: the temporary name

	data        []byte   // fsync-file: the file's content at that moment
	entries     []string // fsync-dir: the directory's entries at that moment
	finalExists bool     // fsync-file: whether the watched final name existed
}

// stepLog records the durability steps of one backend.
type stepLog struct {
	mu    sync.Mutex // guards steps and final
	steps []step
	final string // the final name the current operation writes
}

// watch sets the final name that the next operation writes.
func (l *stepLog) watch(final string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.final = final
}

func (l *stepLog) add(s step) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = append(l.steps, s)
}

func (l *stepLog) take() []step {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.steps
	l.steps = nil
	return s
}

// record wraps b's seams so that every successful durability step is
// logged, in the order it happened, after the real call.
func record(t *testing.T, b *Backend) *stepLog {
	t.Helper()
	log := &stepLog{}
	syncFile, syncD := b.fsyncFile, b.fsyncDir
	b.fsyncFile = func(f *os.File) error {
		if err := syncFile(f); err != nil {
			return err
		}
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Errorf("read %s at fsync: %v", f.Name(), err)
		}
		log.mu.Lock()
		final := log.final
		log.mu.Unlock()
		_, serr := os.Lstat(final)
		log.add(step{op: "fsync-file", path: f.Name(), data: data, finalExists: serr == nil})
		return nil
	}
	b.fsyncDir = func(dir string) error {
		if err := syncD(dir); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("read directory %s at fsync: %v", dir, err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		log.add(step{op: "fsync-dir", path: dir, entries: names})
		return nil
	}
	pubs := b.publishers
	b.publishers = make([]func(tmp, final string) error, len(pubs))
	for i, p := range pubs {
		b.publishers[i] = func(tmp, final string) error {
			if err := p(tmp, final); err != nil {
				return err
			}
			log.add(step{op: "publish", path: final, from: tmp})
			return nil
		}
	}
	return log
}

// ops returns the operations of steps, for messages and comparisons.
func ops(steps []step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.op+" "+s.path)
	}
	return out
}

// checkCommit checks that steps are exactly: fsync of a temporary file
// holding data (while final did not exist yet), the publication of that
// temporary file as final, an fsync of final's directory showing final
// and not the temporary name, and, if parentSync, an fsync of the parent
// directory after that.
func checkCommit(t *testing.T, steps []step, final string, data []byte, parentSync bool) {
	t.Helper()
	dir := filepath.Dir(final)
	want := []string{"fsync-file", "publish " + final, "fsync-dir " + dir}
	if parentSync {
		want = append(want, "fsync-dir "+filepath.Dir(dir))
	}
	got := ops(steps)
	if len(got) != len(want) {
		t.Fatalf("durability steps:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("durability step %d is %q, want %q (all: %q)", i, got[i], want[i], got)
		}
	}
	tmp := steps[0].path
	if !strings.HasPrefix(filepath.Base(tmp), filepath.Base(final)+tempMarker) && !strings.HasPrefix(filepath.Base(tmp), zeroName+tempMarker) {
		t.Errorf("fsynced %s, not a temporary file for %s", tmp, final)
	}
	if !bytes.Equal(steps[0].data, data) {
		t.Errorf("temporary file held %d bytes at fsync, want all %d written first", len(steps[0].data), len(data))
	}
	if steps[0].finalExists {
		t.Errorf("%s existed before the temporary file was synced", final)
	}
	if steps[1].from != tmp {
		t.Errorf("published %s, but fsynced %s", steps[1].from, tmp)
	}
	ents := steps[2].entries
	if !slices.Contains(ents, filepath.Base(final)) {
		t.Errorf("directory fsynced before %s was in it (entries %q)", filepath.Base(final), ents)
	}
	if filepath.Dir(tmp) == dir && slices.Contains(ents, filepath.Base(tmp)) {
		t.Errorf("temporary name still in the directory when it was fsynced (entries %q)", ents)
	}
	if parentSync && !slices.Contains(steps[3].entries, filepath.Base(dir)) {
		t.Errorf("parent fsynced without %s (entries %q)", filepath.Base(dir), steps[3].entries)
	}
}

func TestSaveDurabilityOrder(t *testing.T) {
	ctx := context.Background()
	strategies := map[string][]func(tmp, final string) error{
		"default":        nil,
		"link":           {publishByLink},
		"checked-rename": {publishByCheckedRename},
	}
	for name, pubs := range strategies {
		t.Run(name, func(t *testing.T) {
			b := newTestBackend(t)
			if pubs != nil {
				b.publishers = pubs
			}
			log := record(t, b)
			for _, h := range []backend.Handle{
				{Type: core.PackFile, Name: strings.Repeat("ab", 32)},
				{Type: core.SnapshotFile, Name: strings.Repeat("cd", 32)},
				{Type: core.ConfigFile},
			} {
				data := []byte("contents of " + h.String())
				log.watch(b.filename(h))
				if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
					t.Fatal(err)
				}
				checkCommit(t, log.take(), b.filename(h), data, false)
			}
		})
	}
}

// TestSaveDurabilityOrderNewDir: a Save that has to create its data/xx
// directory also fsyncs data/ after the directory, so the new directory's
// entry is durable.
func TestSaveDurabilityOrderNewDir(t *testing.T) {
	b := newTestBackend(t)
	h := backend.Handle{Type: core.PackFile, Name: strings.Repeat("ef", 32)}
	if err := os.Remove(filepath.Dir(b.filename(h))); err != nil {
		t.Fatal(err)
	}
	log := record(t, b)
	log.watch(b.filename(h))
	data := []byte("pack in a new directory")
	if err := b.Save(context.Background(), h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	checkCommit(t, log.take(), b.filename(h), data, true)
}

func TestAdoptDurabilityOrder(t *testing.T) {
	ctx := context.Background()
	for _, newDir := range []bool{false, true} {
		b := newTestBackend(t)
		h := backend.Handle{Type: core.PackFile, Name: strings.Repeat("12", 32)}
		if newDir {
			if err := os.Remove(filepath.Dir(b.filename(h))); err != nil {
				t.Fatal(err)
			}
		}
		log := record(t, b)
		log.watch(b.filename(h))
		f, err := b.CreateTemp(core.PackFile)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte("adopted pack")
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := b.Adopt(ctx, h, f); err != nil {
			t.Fatal(err)
		}
		checkCommit(t, log.take(), b.filename(h), data, newDir)
	}
}

// TestCreateDurabilityOrder: Create fsyncs data/, the repository root and
// its parent, each after every entry it holds was created.
func TestCreateDurabilityOrder(t *testing.T) {
	base := testDir(t)
	root := filepath.Join(base, "repo")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	b := newBackend(root)
	log := record(t, b)
	if err := b.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	steps := log.take()
	want := []string{"fsync-dir " + filepath.Join(root, "data"), "fsync-dir " + root, "fsync-dir " + base}
	if got := ops(steps); !slices.Equal(got, want) {
		t.Fatalf("durability steps %q, want %q", got, want)
	}
	if n := len(steps[0].entries); n != 256 {
		t.Errorf("data/ fsynced with %d subdirectories, want 256", n)
	}
	for _, d := range []string{"data", "index", "keys", "locks", "snapshots"} {
		if !slices.Contains(steps[1].entries, d) {
			t.Errorf("root fsynced before %s existed (entries %q)", d, steps[1].entries)
		}
	}
	if !slices.Contains(steps[2].entries, "repo") {
		t.Errorf("parent fsynced without the repository (entries %q)", steps[2].entries)
	}
}

// TestFailedSyncIsNotSuccess: a failing fsync of the temporary file stops
// the Save before publishing; a failing fsync of the directory fails it.
func TestFailedSyncIsNotSuccess(t *testing.T) {
	ctx := context.Background()
	h := backend.Handle{Type: core.IndexFile, Name: strings.Repeat("34", 32)}
	boom := errors.New("injected fsync failure")

	b := newTestBackend(t)
	log := record(t, b)
	b.fsyncFile = func(*os.File) error { return boom }
	if err := b.Save(ctx, h, backend.NewByteReader([]byte("x"))); !errors.Is(err, boom) {
		t.Fatalf("Save with failing file fsync: %v", err)
	}
	if steps := log.take(); len(steps) != 0 {
		t.Fatalf("steps after a failed file fsync: %q", ops(steps))
	}
	if _, err := os.Lstat(b.filename(h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file published despite the failed fsync: %v", err)
	}
	ents, err := os.ReadDir(filepath.Dir(b.filename(h)))
	if err != nil || len(ents) != 0 {
		t.Fatalf("leftovers %v, %v", ents, err)
	}

	b = newTestBackend(t)
	b.fsyncDir = func(string) error { return boom }
	if err := b.Save(ctx, h, backend.NewByteReader([]byte("x"))); !errors.Is(err, boom) {
		t.Fatalf("Save with failing directory fsync: %v", err)
	}
}

// TestDefaultSyncCalls: the seams default to real fsync calls, which fail
// on a closed file and a missing directory.
func TestDefaultSyncCalls(t *testing.T) {
	b := newBackend(t.TempDir())
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.fsyncFile(f); err != nil {
		t.Fatalf("fsync open file: %v", err)
	}
	_ = f.Close()
	if err := b.fsyncFile(f); err == nil {
		t.Fatal("fsync of a closed file succeeded: the default does not sync")
	}
	if err := b.fsyncDir(b.dir); err != nil {
		t.Fatalf("fsync directory: %v", err)
	}
	if err := b.fsyncDir(filepath.Join(b.dir, "missing")); err == nil {
		t.Fatal("fsync of a missing directory succeeded: the default does not sync")
	}
}

// TestRemoveDurable: Remove fsyncs the directory after the file is gone, so
// deletions reach the disk in the order they were made (prune deletes an
// index file before the packs it listed); removing a missing file is
// success without a sync.
func TestRemoveDurable(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	h := backend.Handle{Type: core.PackFile, Name: strings.Repeat("9a", 32)}
	if err := b.Save(ctx, h, backend.NewByteReader([]byte("doomed"))); err != nil {
		t.Fatal(err)
	}
	log := record(t, b)
	if err := b.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	steps := log.take()
	dir := filepath.Dir(b.filename(h))
	if got := ops(steps); len(got) != 1 || got[0] != "fsync-dir "+dir {
		t.Fatalf("remove steps = %v, want [fsync-dir %s]", got, dir)
	}
	if slices.Contains(steps[0].entries, filepath.Base(b.filename(h))) {
		t.Fatalf("directory synced while the file was still there: %v", steps[0].entries)
	}
	if err := b.Remove(ctx, h); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if got := ops(log.take()); len(got) != 0 {
		t.Fatalf("removing a missing file synced: %v", got)
	}
	if err := b.Save(ctx, h, backend.NewByteReader([]byte("again"))); err != nil {
		t.Fatal(err)
	}
	b.fsyncDir = func(string) error { return errors.New("disk gone") }
	if err := b.Remove(ctx, h); err == nil {
		t.Fatal("remove with a failing directory sync reported success")
	}
}
