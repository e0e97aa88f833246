package crypto

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Params are scrypt parameters as stored in a key file.
type Params struct {
	N, R, P int
}

// DefaultParams is cairn's floor: 32 MiB of memory per derivation (the same
// memory cost as restic's usual calibration result N=2^18, r=1), with P then
// raised by Calibrate until one derivation takes at least the target time.
var DefaultParams = Params{N: 1 << 15, R: 8, P: 1}

// SaltSize is the length of a key file's salt.
const SaltSize = 64

const (
	maxLaneMemory  = 1 << 30
	maxBlockMemory = 256 << 20
)

// KDF derives a 64-byte user key from password and salt.
func KDF(p Params, salt []byte, password string) (*Key, error) {
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("kdf: salt has %d bytes, want %d", len(salt), SaltSize)
	}
	if p.N <= 1 || p.N&(p.N-1) != 0 || p.R <= 0 || p.P <= 0 {
		return nil, fmt.Errorf("kdf: invalid scrypt parameters N=%d r=%d p=%d", p.N, p.R, p.P)
	}
	// Bounds on what a key file may ask for, so that a crafted or corrupt
	// key file cannot exhaust memory: one lane's scratch (128·r·N bytes) at
	// most 1 GiB (restic calibrates to about 60 MiB), the PBKDF2 buffer
	// (128·r·p bytes) at most 256 MiB.
	if uint64(p.R)*uint64(p.P) >= 1<<30 || 128*uint64(p.N)*uint64(p.R) > maxLaneMemory || 128*uint64(p.R)*uint64(p.P) > maxBlockMemory {
		return nil, fmt.Errorf("kdf: scrypt parameters too large N=%d r=%d p=%d (at most %d MiB per lane and %d MiB of lane blocks)", p.N, p.R, p.P, maxLaneMemory>>20, maxBlockMemory>>20)
	}
	b, err := Scrypt([]byte(password), salt, p.N, p.R, p.P, 64)
	if err != nil {
		return nil, fmt.Errorf("kdf: %w", err)
	}
	return FromBytes(b)
}

// NewSalt returns a random salt.
func NewSalt() []byte {
	s := make([]byte, SaltSize)
	mustRand(s)
	return s
}

// Calibrate returns DefaultParams with P raised until the sequential work of
// one derivation is at least target (restic calibrates to 500 ms). It never
// returns parameters cheaper than DefaultParams.
//
// KDF runs the P lanes concurrently, so timing a KDF call would measure wall
// time on all cores and let more cores choose fewer lanes, i.e. weaker keys.
// Calibrate therefore times a single lane on one goroutine (the CPU work an
// attacker pays per lane, whatever hardware either side has) and picks the
// smallest P with P × lane cost ≥ target: a derivation costs at least target
// of single-core work, exactly what restic's sequential calibration yields.
func Calibrate(target time.Duration) (Params, error) {
	return calibrateParams(DefaultParams, target, laneCost(DefaultParams, 3)), nil
}

// calibrateParams returns base with P raised to the smallest value for which
// P lanes of cost lane reach target, capped at 64 lanes. A non-positive lane
// cost (a clock too coarse to measure it) selects the cap.
func calibrateParams(base Params, target, lane time.Duration) Params {
	p := base
	need := 64
	if lane > 0 {
		need = int(min((target+lane-1)/lane, 64))
	}
	if need > p.P {
		p.P = need
	}
	return p
}

// laneCost times scryptROMix for one lane of p's N and r on the calling
// goroutine, runs times, and returns the fastest run. The scratch buffer is
// allocated before timing and reused, so page-fault and allocation noise
// (which would make a lane look dearer and so lower P) is left out.
func laneCost(p Params, runs int) time.Duration {
	ln := newLane(p.N, p.R, 1)
	defer ln.release()
	b := make([]byte, 128*p.R)
	mustRand(b)
	best := time.Duration(-1)
	for range runs {
		start := time.Now()
		ln.romix(b)
		if d := time.Since(start); best < 0 || d < best {
			best = d
		}
	}
	return best
}

// ParamsFromEnv reads CAIRN_KDF_PARAMS ("N,r,p"), which tests use to create
// repositories with cheap key derivation. ok is false when it is unset.
func ParamsFromEnv() (p Params, ok bool, err error) {
	v := os.Getenv("CAIRN_KDF_PARAMS")
	if v == "" {
		return p, false, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return p, false, fmt.Errorf("CAIRN_KDF_PARAMS=%q: want N,r,p", v)
	}
	vals := make([]int, 3)
	for i, s := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return p, false, fmt.Errorf("CAIRN_KDF_PARAMS=%q: %w", v, err)
		}
		vals[i] = n
	}
	return Params{N: vals[0], R: vals[1], P: vals[2]}, true, nil
}
