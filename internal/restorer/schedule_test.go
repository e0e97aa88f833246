package restorer

import (
	"fmt"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

func TestScheduleJobs(t *testing.T) {
	var jobs []packJob
	packID := func(i int) core.ID { return core.Hash([]byte(fmt.Sprint(i))) }
	job := func(p, rank, off int, bytes int64, uses int) packJob {
		return packJob{pack: packID(p), rank: rank, bytes: bytes, uses: uses,
			blobs: []index.Location{{Pack: packID(p), Blob: pack.Blob{Offset: uint32(off)}}}}
	}
	// packs 0..2 hold data, packs 3 and 4 three ranges of small files each
	jobs = append(jobs, job(0, 0, 0, 16<<20, 1), job(1, 1, 0, 20<<20, 3), job(2, 2, 0, 12<<20, 1))
	for r := 2; r >= 0; r-- {
		jobs = append(jobs, job(3, 3, r*1000, 1<<20, maxUsesPerJob), job(4, 4, r*1000, 1<<20, maxUsesPerJob))
	}
	out := scheduleJobs(jobs)
	var got []string
	for _, j := range out {
		for p := 0; p < 5; p++ {
			if j.pack == packID(p) {
				got = append(got, fmt.Sprintf("%d@%d", p, j.blobs[0].Offset))
			}
		}
	}
	want := "[1@0 3@0 0@0 4@0 2@0 3@1000 4@1000 3@2000 4@2000]"
	if fmt.Sprint(got) != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}
