package restorer

import (
	"context"
	"sync"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/tree"
)

const (
	// maxTreeLoaders bounds the goroutines loading trees ahead of the walk.
	maxTreeLoaders = 4
	// maxTreesAhead bounds the trees queued or loaded but not yet walked.
	maxTreesAhead = 1024
)

func loadTree(ctx context.Context, r *repo.Repository, id core.ID) (*tree.Tree, error) {
	buf, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, err
	}
	return tree.DecodeTree(buf)
}

// treeLoader loads the trees the walk is about to visit in the background.
// The walk announces subtrees with prefetch and takes them with get; the
// loaders take the newest announcement first, which in a depth-first walk
// is the next tree needed. A tree that no loader has started yet is loaded
// by get itself, so the walk never waits for queued work.
type treeLoader struct {
	ctx context.Context
	r   *repo.Repository

	mu      sync.Mutex // guards stack, futures, closed
	cond    *sync.Cond // signalled when stack grows or closed is set
	stack   []*treeFuture
	futures map[core.ID]*treeFuture
	closed  bool
	wg      sync.WaitGroup
}

type futureState int

const (
	queued futureState = iota
	running
	taken // get loads it itself; loaders skip it
)

type treeFuture struct {
	id    core.ID
	state futureState // guarded by treeLoader.mu
	done  chan struct{}
	t     *tree.Tree
	err   error
}

func newTreeLoader(ctx context.Context, r *repo.Repository, workers int) *treeLoader {
	l := &treeLoader{ctx: ctx, r: r, futures: map[core.ID]*treeFuture{}}
	l.cond = sync.NewCond(&l.mu)
	for i := 0; i < max(workers, 1); i++ {
		l.wg.Add(1)
		go l.run()
	}
	return l
}

func (l *treeLoader) run() {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		for len(l.stack) == 0 && !l.closed {
			l.cond.Wait()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		f := l.stack[len(l.stack)-1]
		l.stack = l.stack[:len(l.stack)-1]
		if f.state != queued {
			l.mu.Unlock()
			continue
		}
		f.state = running
		l.mu.Unlock()
		f.t, f.err = loadTree(l.ctx, l.r, f.id)
		close(f.done)
	}
}

// prefetch announces that tree id will be needed soon.
func (l *treeLoader) prefetch(id core.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.futures) >= maxTreesAhead {
		return
	}
	if _, ok := l.futures[id]; ok {
		return
	}
	f := &treeFuture{id: id, done: make(chan struct{})}
	l.futures[id] = f
	l.stack = append(l.stack, f)
	l.cond.Signal()
}

// forget drops an announcement that will not be followed by get.
func (l *treeLoader) forget(id core.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.futures[id]; ok {
		delete(l.futures, id)
		if f.state == queued {
			f.state = taken
		}
	}
}

// get returns tree id, waiting for a loader that already works on it, or
// loading it directly.
func (l *treeLoader) get(id core.ID) (*tree.Tree, error) {
	l.mu.Lock()
	f, ok := l.futures[id]
	if ok {
		delete(l.futures, id)
		if f.state == queued {
			f.state = taken
			ok = false
		}
	}
	l.mu.Unlock()
	if ok {
		<-f.done
		return f.t, f.err
	}
	return loadTree(l.ctx, l.r, id)
}

// close stops the loaders and waits for them; trees still queued are
// dropped.
func (l *treeLoader) close() {
	l.mu.Lock()
	l.closed = true
	l.stack = nil
	l.cond.Broadcast()
	l.mu.Unlock()
	l.wg.Wait()
}
