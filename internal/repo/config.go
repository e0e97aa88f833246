// Package repo implements a restic-format repository on top of a backend:
// configuration and keys, unpacked files (snapshots, index, locks), blob
// storage in packs, and the master index.
package repo

import (
	"encoding/json"
	"fmt"

	"github.com/restic/chunker"
)

// Repository format versions.
const (
	MinVersion     = 1
	MaxVersion     = 2
	DefaultVersion = 2
)

// Config is the repository's config file.
type Config struct {
	Version           uint        `json:"version"`
	ID                string      `json:"id"`
	ChunkerPolynomial chunker.Pol `json:"chunker_polynomial"`
}

// NewConfig returns a config with a fresh ID and a random chunker polynomial.
func NewConfig(version uint) (Config, error) {
	if version < MinVersion || version > MaxVersion {
		return Config{}, fmt.Errorf("unsupported repository version %d (supported: %d to %d)", version, MinVersion, MaxVersion)
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Config{}, fmt.Errorf("new chunker polynomial: %w", err)
	}
	return Config{Version: version, ID: randomHexID(), ChunkerPolynomial: pol}, nil
}

// Validate checks a loaded config.
func (c Config) Validate() error {
	if c.Version < MinVersion || c.Version > MaxVersion {
		return fmt.Errorf("unsupported repository version %d (this cairn reads %d to %d)", c.Version, MinVersion, MaxVersion)
	}
	if c.ID == "" {
		return fmt.Errorf("config has no repository ID")
	}
	if !c.ChunkerPolynomial.Irreducible() || c.ChunkerPolynomial.Deg() != 53 {
		return fmt.Errorf("config chunker polynomial %v is not an irreducible polynomial of degree 53", c.ChunkerPolynomial)
	}
	return nil
}

// DecodeConfig parses and validates config JSON.
func DecodeConfig(buf []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(buf, &c); err != nil {
		return c, fmt.Errorf("decode config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("decode config: %w", err)
	}
	return c, nil
}
