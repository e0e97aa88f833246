package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

// ErrWrongPassword means no key file could be opened with the password.
var ErrWrongPassword = errors.New("wrong password or no key found")

// KeyFile is the JSON content of keys/<id>: not encrypted; Data holds the
// master key sealed with the key derived from the password.
type KeyFile struct {
	Created  time.Time `json:"created"`
	Username string    `json:"username"`
	Hostname string    `json:"hostname"`
	KDF      string    `json:"kdf"`
	N        int       `json:"N"`
	R        int       `json:"r"`
	P        int       `json:"p"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`

	id core.ID
}

// ID returns the key file's ID.
func (k *KeyFile) ID() core.ID { return k.id }

// DecodeKeyFile parses and validates key file JSON.
func DecodeKeyFile(buf []byte) (*KeyFile, error) {
	var k KeyFile
	if err := json.Unmarshal(buf, &k); err != nil {
		return nil, fmt.Errorf("decode key file: %w", err)
	}
	if k.KDF != "scrypt" {
		return nil, fmt.Errorf("decode key file: unsupported KDF %q", k.KDF)
	}
	if len(k.Salt) != crypto.SaltSize {
		return nil, fmt.Errorf("decode key file: salt has %d bytes, want %d", len(k.Salt), crypto.SaltSize)
	}
	if len(k.Data) < crypto.Extension {
		return nil, fmt.Errorf("decode key file: sealed master key too short (%d bytes)", len(k.Data))
	}
	return &k, nil
}

// Open derives the user key from password and unseals the master key.
func (k *KeyFile) Open(password string) (*crypto.Key, error) {
	uk, err := crypto.KDF(crypto.Params{N: k.N, R: k.R, P: k.P}, k.Salt, password)
	if err != nil {
		return nil, fmt.Errorf("key %v: %w", k.id.Str(), err)
	}
	plain, err := uk.Open(nil, k.Data)
	if err != nil {
		if errors.Is(err, crypto.ErrUnauthenticated) {
			return nil, ErrWrongPassword
		}
		return nil, err
	}
	mk := &crypto.Key{}
	if err := json.Unmarshal(plain, mk); err != nil {
		return nil, fmt.Errorf("key %v: %w", k.id.Str(), err)
	}
	return mk, nil
}

// NewKeyFile seals master under password with parameters p.
func NewKeyFile(master *crypto.Key, password string, p crypto.Params, hostname string) (*KeyFile, []byte, error) {
	salt := crypto.NewSalt()
	uk, err := crypto.KDF(p, salt, password)
	if err != nil {
		return nil, nil, err
	}
	mj, err := json.Marshal(master)
	if err != nil {
		return nil, nil, err
	}
	k := &KeyFile{Created: time.Now(), KDF: "scrypt", N: p.N, R: p.R, P: p.P, Salt: salt, Data: uk.Seal(nil, mj), Hostname: hostname}
	if k.Hostname == "" {
		k.Hostname, _ = os.Hostname()
	}
	if u, err := user.Current(); err == nil {
		k.Username = u.Username
	}
	buf, err := json.Marshal(k)
	if err != nil {
		return nil, nil, err
	}
	k.id = core.Hash(buf)
	return k, buf, nil
}

// KDFParams returns the scrypt parameters for a new key: CAIRN_KDF_PARAMS
// if set (tests), else calibrated.
func KDFParams() (crypto.Params, error) {
	if p, ok, err := crypto.ParamsFromEnv(); ok || err != nil {
		return p, err
	}
	return crypto.Calibrate(500 * time.Millisecond)
}

// LoadKeyFile loads and decodes keys/<id>, checking its hash.
func LoadKeyFile(ctx context.Context, be backend.Backend, id core.ID) (*KeyFile, error) {
	buf, err := backend.LoadAll(ctx, be, backend.Handle{Type: core.KeyFile, Name: id.String()})
	if err != nil {
		return nil, fmt.Errorf("load key %v: %w", id.Str(), err)
	}
	if core.Hash(buf) != id {
		return nil, fmt.Errorf("load key %v: content does not match its name (file damaged)", id.Str())
	}
	k, err := DecodeKeyFile(buf)
	if err != nil {
		return nil, fmt.Errorf("key %v: %w", id.Str(), err)
	}
	k.id = id
	return k, nil
}

// SearchKey tries every key file (the hinted one first) and returns the
// master key and the key file that opened it.
func SearchKey(ctx context.Context, be backend.Backend, password string, hint string, maxKeys int) (*crypto.Key, *KeyFile, error) {
	var ids []core.ID
	err := be.List(ctx, core.KeyFile, func(fi backend.FileInfo) error {
		id, err := core.ParseID(fi.Name)
		if err != nil {
			return nil // not a key file name: ignore
		}
		if hint != "" && len(hint) <= len(fi.Name) && fi.Name[:len(hint)] == hint {
			ids = append([]core.ID{id}, ids...)
		} else {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list keys: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("no key files found in %s: %w", be.Location(), ErrWrongPassword)
	}
	var lastErr error
	for i, id := range ids {
		if maxKeys > 0 && i >= maxKeys {
			break
		}
		kf, err := LoadKeyFile(ctx, be, id)
		if err != nil {
			lastErr = err
			continue
		}
		mk, err := kf.Open(password)
		if err != nil {
			if !errors.Is(err, ErrWrongPassword) {
				lastErr = err
			}
			continue
		}
		return mk, kf, nil
	}
	if lastErr != nil {
		return nil, nil, fmt.Errorf("%w (also: %v)", ErrWrongPassword, lastErr)
	}
	return nil, nil, ErrWrongPassword
}
