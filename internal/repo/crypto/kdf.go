package crypto

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/scrypt"
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

// KDF derives a 64-byte user key from password and salt.
func KDF(p Params, salt []byte, password string) (*Key, error) {
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("kdf: salt has %d bytes, want %d", len(salt), SaltSize)
	}
	if p.N <= 1 || p.N&(p.N-1) != 0 || p.R <= 0 || p.P <= 0 {
		return nil, fmt.Errorf("kdf: invalid scrypt parameters N=%d r=%d p=%d", p.N, p.R, p.P)
	}
	if uint64(p.R)*uint64(p.P) >= 1<<30 || uint64(p.N)*uint64(p.R) > 1<<32 {
		return nil, fmt.Errorf("kdf: scrypt parameters too large N=%d r=%d p=%d", p.N, p.R, p.P)
	}
	b, err := scrypt.Key([]byte(password), salt, p.N, p.R, p.P, 64)
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

// Calibrate returns DefaultParams with P raised until one derivation takes at
// least target (restic calibrates to 500 ms). It never returns parameters
// cheaper than DefaultParams.
func Calibrate(target time.Duration) (Params, error) {
	p := DefaultParams
	salt := NewSalt()
	start := time.Now()
	if _, err := KDF(p, salt, "calibration"); err != nil {
		return p, err
	}
	one := time.Since(start)
	if one <= 0 {
		one = time.Millisecond
	}
	if need := int((target + one - 1) / one); need > p.P {
		p.P = need
	}
	if p.P > 64 {
		p.P = 64
	}
	return p, nil
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
