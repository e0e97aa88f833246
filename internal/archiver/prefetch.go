package archiver

import (
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/tree"
)

// prefetchWindow is how many parent subtrees of one directory are loaded
// ahead of the walker. The walker is depth first and loads one parent tree
// per directory; decoding them in the background keeps the second core
// busy on an incremental backup and hides backend latency (REST, S3).
const prefetchWindow = 8

type treeFuture struct {
	done chan struct{}
	t    *tree.Tree // nil: unreadable (backed up as if there were no parent)
}

// subtreePrefetch loads the subtrees of one parent directory's
// subdirectories, at most prefetchWindow beyond the last one the walker
// reached.
type subtreePrefetch struct {
	a       *Archiver
	ids     []core.ID       // subtree IDs of the subdirectories, in order
	pos     map[core.ID]int // index in ids
	started int             // ids[:started] have been started
}

func (a *Archiver) prefetchSubtrees(parent *tree.Tree) *subtreePrefetch {
	if parent == nil {
		return nil
	}
	p := &subtreePrefetch{a: a}
	for _, n := range parent.Nodes {
		if n.Type == tree.NodeDir && n.Subtree != nil {
			if p.pos == nil {
				p.pos = map[core.ID]int{}
			}
			if _, dup := p.pos[*n.Subtree]; !dup {
				p.pos[*n.Subtree] = len(p.ids)
				p.ids = append(p.ids, *n.Subtree)
			}
		}
	}
	if len(p.ids) == 0 {
		return nil
	}
	p.startUpTo(prefetchWindow)
	return p
}

func (p *subtreePrefetch) startUpTo(n int) {
	n = min(n, len(p.ids))
	a := p.a
	for ; p.started < n; p.started++ {
		id := p.ids[p.started]
		a.prefetchMu.Lock()
		if _, ok := a.prefetched[id]; ok {
			a.prefetchMu.Unlock()
			continue
		}
		f := &treeFuture{done: make(chan struct{})}
		a.prefetched[id] = f
		a.prefetchMu.Unlock()
		go func() {
			defer close(f.done)
			f.t = a.readTree(id)
		}()
	}
}

// reached tells that the walker is about to enter the subdirectory whose
// parent node is prev: the window moves on.
func (p *subtreePrefetch) reached(prev *tree.Node) {
	if p == nil || prev == nil || prev.Subtree == nil {
		return
	}
	if i, ok := p.pos[*prev.Subtree]; ok {
		p.startUpTo(i + 1 + prefetchWindow)
	}
}

// finish drops prefetched trees the walker did not use (excluded or
// vanished directories) once the directory has been walked.
func (p *subtreePrefetch) finish() {
	if p == nil {
		return
	}
	a := p.a
	a.prefetchMu.Lock()
	for _, id := range p.ids[:p.started] {
		delete(a.prefetched, id)
	}
	a.prefetchMu.Unlock()
}
