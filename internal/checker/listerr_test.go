package checker

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

// failingListBackend fails every listing of one file type.
type failingListBackend struct {
	backend.Backend
	t core.FileType
}

var errListBroken = errors.New("listing broken (test)")

func (b failingListBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if t == b.t {
		return errListBroken
	}
	return b.Backend.List(ctx, t, fn)
}

// TestCheckAbortsOnListError (I12, H24): a listing that fails is never taken
// as an empty listing. For each file type, the phase that lists it returns
// the error (wrapping the backend's) instead of going on: no "every pack is
// missing", no "no snapshots, nothing to check", no success.
func TestCheckAbortsOnListError(t *testing.T) {
	f := newFixture(t, 2)
	for _, ft := range []core.FileType{core.SnapshotFile, core.IndexFile, core.PackFile} {
		t.Run(ft.String(), func(t *testing.T) {
			ctx := context.Background()
			r, err := repo.Open(ctx, failingListBackend{Backend: f.be, t: ft}, testPassword, repo.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var problems []Problem
			c := New(r, Options{Report: func(p Problem) { problems = append(problems, p) }})
			_, err = c.ListSnapshots(ctx)
			if err == nil {
				err = c.LoadIndex(ctx)
			}
			if err == nil {
				err = c.CheckPacks(ctx)
			}
			if err == nil {
				err = c.CheckStructure(ctx)
			}
			if !errors.Is(err, errListBroken) {
				t.Fatalf("check with a failing %v listing: %v (problems %v), want the listing error", ft, err, problems)
			}
			for _, p := range problems {
				if p.Kind == KindMissingPack {
					t.Fatalf("a failed listing was read as missing packs: %s", p.Message)
				}
			}
		})
	}
}
