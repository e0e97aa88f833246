package cli

import (
	"runtime"
	"testing"
)

// TestSpareProc: the first backup raises GOMAXPROCS by one, the last one
// to finish puts it back, every caller sizes its workers by the original
// count, a restore called twice counts once, and a GOMAXPROCS the user
// set is left alone.
func TestSpareProc(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // as if unset
	orig := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(orig)

	c1, r1 := spareProc()
	if c1 != orig || runtime.GOMAXPROCS(0) != orig+1 {
		t.Fatalf("first: cpus %d, GOMAXPROCS %d; want %d, %d", c1, runtime.GOMAXPROCS(0), orig, orig+1)
	}
	c2, r2 := spareProc()
	if c2 != orig || runtime.GOMAXPROCS(0) != orig+1 {
		t.Fatalf("second: cpus %d, GOMAXPROCS %d; want %d, %d", c2, runtime.GOMAXPROCS(0), orig, orig+1)
	}
	r1()
	r1() // a second call must not count again
	if got := runtime.GOMAXPROCS(0); got != orig+1 {
		t.Fatalf("one of two backups done: GOMAXPROCS %d, want %d", got, orig+1)
	}
	r2()
	if got := runtime.GOMAXPROCS(0); got != orig {
		t.Fatalf("all done: GOMAXPROCS %d, want %d", got, orig)
	}

	t.Setenv("GOMAXPROCS", "3")
	c3, r3 := spareProc()
	if c3 != orig || runtime.GOMAXPROCS(0) != orig {
		t.Fatalf("user's GOMAXPROCS: cpus %d, GOMAXPROCS %d; want %d unchanged", c3, runtime.GOMAXPROCS(0), orig)
	}
	r3()
}
