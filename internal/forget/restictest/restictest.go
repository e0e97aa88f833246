// Package restictest drives a real restic binary (the reference peer) for
// differential tests: it creates a throw-away repository and runs restic
// commands against it.
//
// restic calibrates its key derivation to take about half a second, which
// every command pays again. Init therefore re-wraps the master key under a
// cheap scrypt setting (N=1024, r=8, p=1), following the key file format in
// restic's design document, so that the many commands a test runs stay fast.
// Such a repository must never hold real data.
package restictest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/scrypt"
)

// ErrNotFound is returned by Lookup when no restic binary is installed.
var ErrNotFound = errors.New("restic binary not found")

// Lookup returns the path of the restic binary ($RESTIC_BINARY, else
// "restic" on $PATH).
func Lookup() (string, error) {
	name := os.Getenv("RESTIC_BINARY")
	if name == "" {
		name = "restic"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("lookup %s: %w: %w", name, ErrNotFound, err)
	}
	return p, nil
}

// SkipOrFail handles a missing binary: on CI (CI=true) the test fails,
// elsewhere it is skipped. Any other error fails the test.
func SkipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotFound) && os.Getenv("CI") != "true" {
		tb.Skipf("differential test needs restic: %v", err)
	}
	tb.Fatalf("restic setup: %v", err)
}

// Repo is a restic repository in a local directory.
type Repo struct {
	Bin      string // restic binary
	Dir      string // repository directory
	Password string
	env      []string
}

// Init creates a repository at dir (which must not exist yet) with password
// and re-wraps its key under cheap KDF parameters.
func Init(ctx context.Context, bin, dir, password string) (*Repo, error) {
	env := []string{"RESTIC_PASSWORD=" + password, "RESTIC_REPOSITORY=" + dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RESTIC_") {
			env = append(env, kv)
		}
	}
	r := &Repo{Bin: bin, Dir: dir, Password: password, env: env}
	if _, err := r.Run(ctx, "init"); err != nil {
		return nil, fmt.Errorf("restic init: %w", err)
	}
	if err := rewrapKey(dir, password); err != nil {
		return nil, fmt.Errorf("restic init: %w", err)
	}
	return r, nil
}

// Run runs restic with args (plus --no-cache) and returns its stdout.
func (r *Repo) Run(ctx context.Context, args ...string) ([]byte, error) {
	return r.RunEnv(ctx, nil, args...)
}

// RunEnv is Run with extra environment variables (e.g. "TZ=Europe/Berlin").
func (r *Repo) RunEnv(ctx context.Context, env []string, args ...string) ([]byte, error) {
	stdout, stderr, err := r.RunCombined(ctx, "", env, args...)
	if err != nil {
		return stdout, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(stderr)))
	}
	return stdout, nil
}

// RunCombined runs restic (plus --no-cache) in working directory dir (""
// for the current one) with extra environment variables, and returns
// stdout and stderr separately, also on error.
func (r *Repo) RunCombined(ctx context.Context, dir string, env []string, args ...string) (stdout, stderr []byte, err error) {
	full := append([]string{"--no-cache"}, args...)
	cmd := exec.CommandContext(ctx, r.Bin, full...)
	cmd.Dir = dir
	cmd.Env = append(append([]string(nil), r.env...), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.Bytes(), e.Bytes(), fmt.Errorf("restic %s: %w", strings.Join(args, " "), err)
	}
	return o.Bytes(), e.Bytes(), nil
}

// keyFile is the JSON of a restic key file (design.rst, "Keys, Encryption
// and MAC"); field order matters because the file name is its hash.
type keyFile struct {
	Created  time.Time `json:"created"`
	Username string    `json:"username"`
	Hostname string    `json:"hostname"`
	KDF      string    `json:"kdf"`
	N        int       `json:"N"`
	R        int       `json:"r"`
	P        int       `json:"p"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`
}

// mac computes restic's Poly1305-AES tag of ct under the user key uk.
func mac(uk, nonce, ct []byte) ([16]byte, error) {
	var tag [16]byte
	blk, err := aes.NewCipher(uk[32:48])
	if err != nil {
		return tag, fmt.Errorf("mac key: %w", err)
	}
	var key [32]byte
	copy(key[:16], uk[48:64])
	blk.Encrypt(key[16:], nonce)
	poly1305.Sum(&tag, ct, &key)
	return tag, nil
}

// ctr applies AES-256-CTR under the user key uk.
func ctr(uk, nonce, in []byte) ([]byte, error) {
	blk, err := aes.NewCipher(uk[:32])
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	out := make([]byte, len(in))
	cipher.NewCTR(blk, nonce).XORKeyStream(out, in)
	return out, nil
}

// rewrapKey replaces the single key file of the repository at dir with one
// holding the same master key under cheap scrypt parameters.
func rewrapKey(dir, password string) error {
	names, err := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	if len(names) != 1 {
		return fmt.Errorf("rewrap key: want 1 key file, found %d", len(names))
	}
	raw, err := os.ReadFile(names[0])
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		return fmt.Errorf("rewrap key: parse %s: %w", names[0], err)
	}
	if len(kf.Data) < 32 {
		return fmt.Errorf("rewrap key: key data too short (%d bytes)", len(kf.Data))
	}
	uk, err := scrypt.Key([]byte(password), kf.Salt, kf.N, kf.R, kf.P, 64)
	if err != nil {
		return fmt.Errorf("rewrap key: kdf: %w", err)
	}
	nonce, ct, tag := kf.Data[:16], kf.Data[16:len(kf.Data)-16], kf.Data[len(kf.Data)-16:]
	want, err := mac(uk, nonce, ct)
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	if subtle.ConstantTimeCompare(want[:], tag) != 1 {
		return errors.New("rewrap key: MAC mismatch (wrong password?)")
	}
	plain, err := ctr(uk, nonce, ct)
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}

	kf.N, kf.R, kf.P = 1024, 8, 1
	kf.Salt = make([]byte, 64)
	newNonce := make([]byte, 16)
	if _, err := rand.Read(kf.Salt); err != nil {
		return fmt.Errorf("rewrap key: salt: %w", err)
	}
	if _, err := rand.Read(newNonce); err != nil {
		return fmt.Errorf("rewrap key: nonce: %w", err)
	}
	uk, err = scrypt.Key([]byte(password), kf.Salt, kf.N, kf.R, kf.P, 64)
	if err != nil {
		return fmt.Errorf("rewrap key: kdf: %w", err)
	}
	ct, err = ctr(uk, newNonce, plain)
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	tagNew, err := mac(uk, newNonce, ct)
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	kf.Data = append(append(append([]byte(nil), newNonce...), ct...), tagNew[:]...)
	out, err := json.Marshal(kf)
	if err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	sum := sha256.Sum256(out)
	name := filepath.Join(dir, "keys", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(name, out, 0o400); err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	if err := os.Remove(names[0]); err != nil {
		return fmt.Errorf("rewrap key: %w", err)
	}
	return nil
}

// Clone copies the repository to dir (which must not exist) and returns a
// handle on the copy. Copies share keys, config and content, so commands
// can run on several copies at once without meeting each other's locks
// (restic 0.14 backs off for many seconds when a lock it listed vanishes),
// and MergeFrom can combine them again.
func (r *Repo) Clone(ctx context.Context, dir string) (*Repo, error) {
	err := filepath.WalkDir(r.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(r.Dir, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if filepath.Dir(rel) == "locks" {
			return nil
		}
		return copyFile(path, target)
	})
	if err != nil {
		return nil, fmt.Errorf("clone repository: %w", err)
	}
	env := make([]string, 0, len(r.env))
	for _, kv := range r.env {
		if strings.HasPrefix(kv, "RESTIC_REPOSITORY=") {
			kv = "RESTIC_REPOSITORY=" + dir
		}
		env = append(env, kv)
	}
	return &Repo{Bin: r.Bin, Dir: dir, Password: r.Password, env: env}, nil
}

// MergeFrom copies the data, index and snapshot files of src (a Clone of
// the same repository) that r lacks. Files are named by their content
// hash, so the union is a valid repository.
func (r *Repo) MergeFrom(ctx context.Context, src *Repo) error {
	for _, sub := range []string{"data", "index", "snapshots"} {
		base := filepath.Join(src.Dir, sub)
		err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, err := filepath.Rel(src.Dir, path)
			if err != nil {
				return err
			}
			target := filepath.Join(r.Dir, rel)
			if d.IsDir() {
				return os.MkdirAll(target, 0o700)
			}
			if _, err := os.Stat(target); err == nil {
				return nil
			}
			return copyFile(path, target)
		})
		if err != nil {
			return fmt.Errorf("merge repository %s: %w", src.Dir, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}
