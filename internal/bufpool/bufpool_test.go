package bufpool

import "testing"

func TestGetPut(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, 5<<20 + 3, 1 << 25, 1<<25 + 1} {
		b := Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(b))
		}
		if n <= 1<<25 && cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("Get(%d) capacity %d is not a power of two", n, cap(b))
		}
		Put(b)
		c := Get(n)
		if len(c) != n {
			t.Fatal("reused buffer has the wrong length")
		}
	}
	Put(make([]byte, 100, 100)) // odd capacity: ignored
}

func BenchmarkGetPut(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Put(Get(1 << 20))
	}
}
