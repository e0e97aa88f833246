package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/core"
)

// benchText returns n bytes of source-like text: lines of words drawn from
// a small vocabulary, so that zstd finds matches and entropy-codes literals
// (about 3:1 at the default level), like the Go tree of the standard corpus.
func benchText(n int, seed uint64) []byte {
	words := strings.Fields(`func return if err != nil { } for range := var const type struct
		interface map chan go defer select case default package import the of to and a
		buf len cap make append copy ctx context.Context error string int64 uint32 byte
		fmt.Errorf("%w", err) // comment: blobs packs index snapshot tree node`)
	r := rand.New(rand.NewPCG(seed, 1))
	var sb strings.Builder
	sb.Grow(n + 128)
	for sb.Len() < n {
		for i := r.IntN(4); i > 0; i-- {
			sb.WriteByte('\t')
		}
		for i := 2 + r.IntN(9); i > 0; i-- {
			sb.WriteString(words[r.IntN(len(words))])
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%d\n", r.IntN(1000))
	}
	return []byte(sb.String()[:n])
}

// BenchmarkSaveBlob measures SaveBlob (chunk ID, compression, verification
// before upload, encryption, pack assembly, pack files adopted by a local
// repository) for 1 MiB blobs, all distinct, from GOMAXPROCS goroutines as
// the archiver's blob workers call it. The stored bytes per blob are
// reported as a metric, so that a faster configuration that compresses
// worse shows.
//
//	go test -run '^$' -bench SaveBlob -count 6 ./internal/repo | benchstat -
func BenchmarkSaveBlob(b *testing.B) {
	const size = 1 << 20
	data := map[string][]byte{
		"text":   benchText(size, 1),
		"random": func() []byte { p := make([]byte, size); rand.NewChaCha8([32]byte{1}).Read(p); return p }(),
	}
	modes := []struct {
		name string
		opts Options
	}{
		{"auto", Options{Compression: CompressionAuto}},
		{"auto-noverify", Options{Compression: CompressionAuto, NoExtraVerify: true}},
		{"off", Options{Compression: CompressionOff}},
	}
	for _, kind := range []string{"text", "random"} {
		for _, m := range modes {
			b.Run(kind+"/"+m.name, func(b *testing.B) {
				benchSaveBlob(b, data[kind], m.opts)
			})
		}
	}
}

func benchSaveBlob(b *testing.B, src []byte, opts Options) {
	ctx := context.Background()
	be, err := local.Create(ctx, filepath.Join(b.TempDir(), "repo"))
	if err != nil {
		b.Fatal(err)
	}
	r, err := Init(ctx, be, "secret", 2, testParams, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var seq, stored atomic.Uint64
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := append([]byte(nil), src...)
		for pb.Next() {
			// a distinct blob every time: nothing is deduplicated
			binary.LittleEndian.PutUint64(buf, seq.Add(1))
			res, err := r.SaveBlob(ctx, core.DataBlob, buf, core.ID{}, false)
			if err != nil {
				b.Error(err)
				return
			}
			if res.Known {
				b.Error("a distinct blob was reported as known")
				return
			}
			stored.Add(uint64(res.Size))
		}
	})
	if err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := seq.Load(); n > 0 {
		b.ReportMetric(float64(stored.Load())/float64(n), "stored-B/blob")
	}
}
