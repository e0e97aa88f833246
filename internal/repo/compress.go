package repo

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compression selects how data blobs are compressed in v2 repositories.
type Compression int

const (
	CompressionAuto Compression = iota // zstd default level
	CompressionOff                     // data blobs stored plain (trees are still compressed)
	CompressionFastest
	CompressionBetter
	CompressionMax
)

// ParseCompression parses auto|off|fastest|better|max.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "auto":
		return CompressionAuto, nil
	case "off":
		return CompressionOff, nil
	case "fastest":
		return CompressionFastest, nil
	case "better":
		return CompressionBetter, nil
	case "max":
		return CompressionMax, nil
	}
	return 0, fmt.Errorf("invalid compression mode %q (want auto, off, fastest, better or max)", s)
}

func (c Compression) String() string {
	return [...]string{"auto", "off", "fastest", "better", "max"}[c]
}

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	encoderMu   sync.Mutex // guards encoders
	encoders    = map[Compression]*zstd.Encoder{}
)

func zstdDecoder() *zstd.Decoder {
	decoderOnce.Do(func() {
		var err error
		decoder, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(16<<30),
			zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			panic(err)
		}
	})
	return decoder
}

func zstdEncoder(c Compression) *zstd.Encoder {
	if c == CompressionOff {
		c = CompressionAuto
	}
	encoderMu.Lock()
	defer encoderMu.Unlock()
	if e, ok := encoders[c]; ok {
		return e
	}
	level := zstd.SpeedDefault
	switch c {
	case CompressionFastest:
		level = zstd.SpeedFastest
	case CompressionBetter:
		level = zstd.SpeedBetterCompression
	case CompressionMax:
		level = zstd.SpeedBestCompression
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(512*1024),
		// Entropy-code literals even in blocks without matches: newer
		// versions of the library skip that at the default level, which
		// left text such as base64 (no matches, skewed bytes) 25 % larger
		// than restic 0.14 stores it. Costs ~0.2 ns/byte on random data.
		zstd.WithAllLitEntropyCompression(true),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithZeroFrames(true))
	if err != nil {
		panic(err)
	}
	encoders[c] = e
	return e
}

// decompress decodes zstd data into dst[:0], checking the expected size
// (want < 0: any). When dst has room for want bytes, builds with cgo decode
// with libzstd (decompressSized), ~18 % faster than the pure-Go decoder on
// the corpus's text (BenchmarkDecompress); check and restore presize dst.
// Either way the caller compares the plaintext's SHA-256 with the blob's
// ID before trusting it.
func decompress(dst, src []byte, want int) ([]byte, error) {
	if want > 0 && cap(dst) >= want && len(src) > 0 {
		return decompressSized(dst, src, want)
	}
	return decompressGo(dst, src, want)
}

// decompressGo is decompress with the pure-Go decoder.
func decompressGo(dst, src []byte, want int) ([]byte, error) {
	if want >= 0 {
		// The decoder allocates what a frame declares up front: refuse a
		// declaration larger than the expected size (found by
		// FuzzDecompressEngines: 37 bytes that claimed 2.8 GB).
		var h zstd.Header
		if h.Decode(src) == nil && h.HasFCS && h.FrameContentSize > uint64(want) {
			return nil, fmt.Errorf("decompress: frame declares %d bytes, expected %d", h.FrameContentSize, want)
		}
	}
	out, err := zstdDecoder().DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if want >= 0 && len(out) != want {
		return nil, fmt.Errorf("decompress: got %d bytes, index says %d", len(out), want)
	}
	return out, nil
}

// CompressionEngine names the zstd encoder of this build (cairn version).
func CompressionEngine() string { return zstdEngine }

// pureGoEngine is zstdEngine in builds without cgo.
const pureGoEngine = "klauspost/compress/zstd (pure Go)"
