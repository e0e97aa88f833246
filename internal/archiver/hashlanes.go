package archiver

import (
	"context"

	"github.com/cairn-backup/cairn/internal/core"
)

// hashLanes lets a blob worker hash two chunks side by side
// (core.WriteChecked2): SHA-256 on cores with SHA-NI runs two messages
// nearly as fast as one. Chunks differ in length, so a lane whose chunk is
// done is saved and refilled with the next chunk while the other chunk's
// rest goes on hashing with it; a worker with nothing new to pair finishes
// its pending chunk alone (finishAlone). Each lane's job is the worker's
// own until it is saved.
type hashLanes struct {
	lane [2]hashLane
}

type hashLane struct {
	job  *blobJob // nil: the lane is free
	rest []byte   // part of job's chunk not hashed yet
	d    core.CheckedDigest
}

// pending reports whether a chunk waits in a lane.
func (h *hashLanes) pending() bool { return h.lane[0].job != nil || h.lane[1].job != nil }

// add puts job (whose ID is needed) in a free lane; with both lanes full it
// hashes them side by side until one is done and saves that one.
func (h *hashLanes) add(a *Archiver, job *blobJob) {
	l := &h.lane[0]
	if l.job != nil {
		l = &h.lane[1]
	}
	l.job, l.rest = job, job.ch.data
	l.d.Reset(job.ch.data)
	if h.lane[0].job == nil || h.lane[1].job == nil {
		return
	}
	x, y := &h.lane[0], &h.lane[1]
	n := min(len(x.rest), len(y.rest))
	core.WriteChecked2(&x.d, n, &y.d, n)
	x.rest, y.rest = x.rest[n:], y.rest[n:]
	if len(x.rest) == 0 {
		h.save(a, x)
	}
	if len(y.rest) == 0 {
		h.save(a, y)
	}
}

// finishAlone hashes what is left of the pending chunk on its own and
// saves it.
func (h *hashLanes) finishAlone(a *Archiver) {
	for i := range h.lane {
		if l := &h.lane[i]; l.job != nil {
			l.d.Write(len(l.rest))
			l.rest = nil
			h.save(a, l)
		}
	}
}

// save frees lane l and saves its fully hashed chunk.
func (h *hashLanes) save(a *Archiver, l *hashLane) {
	job := l.job
	job.ch.id, job.ch.sum = l.d.Sum()
	job.ch.needID = false
	l.job, l.rest = nil, nil
	a.saveChunk(job)
}

// abandon fails the chunks still in the lanes (the worker is stopping on
// cancellation).
func (h *hashLanes) abandon(a *Archiver) {
	for i := range h.lane {
		if l := &h.lane[i]; l.job != nil {
			l.job.fail(a, context.Cause(a.ctx))
			l.job, l.rest = nil, nil
		}
	}
}
