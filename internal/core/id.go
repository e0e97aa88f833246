// Package core holds the small value types every layer of cairn shares:
// content IDs, blob and file types, and sets of them.
package core

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// IDSize is the length of an ID in bytes (a SHA-256 digest).
const IDSize = sha256.Size

// ID is a SHA-256 digest naming a blob or a repository file.
type ID [IDSize]byte

// Hash returns the ID of data.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// NewRandomID returns a random ID (used for repository IDs and tests).
func NewRandomID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return id
}

// ParseID parses a 64-character lowercase or uppercase hex string.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("invalid ID %q: length %d, want %d hex characters", s, len(s), 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// IsValidName reports whether s is a well-formed lowercase 64-hex file name.
func IsValidName(s string) bool {
	if len(s) != 2*IDSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// String returns the lowercase hex form of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Str returns the short (8 character) form of id used in messages.
func (id ID) Str() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether id is all zero.
func (id ID) IsNull() bool { return id == ID{} }

// MarshalJSON encodes id as a hex string.
func (id ID) MarshalJSON() ([]byte, error) {
	buf := make([]byte, 2*IDSize+2)
	buf[0] = '"'
	hex.Encode(buf[1:], id[:])
	buf[len(buf)-1] = '"'
	return buf, nil
}

// UnmarshalJSON decodes a hex string into id.
func (id *ID) UnmarshalJSON(b []byte) error {
	// the common form, "<64 hex digits>", needs no JSON string decoding (a
	// JSON string without escapes is its raw bytes); anything else takes
	// the general path, which also produces the errors
	if len(b) == 2*IDSize+2 && b[0] == '"' && b[len(b)-1] == '"' {
		var v ID
		if _, err := hex.Decode(v[:], b[1:len(b)-1]); err == nil {
			*id = v
			return nil
		}
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("invalid ID: %w", err)
	}
	v, err := ParseID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// IDs is a list of IDs.
type IDs []ID

func (ids IDs) Len() int           { return len(ids) }
func (ids IDs) Less(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) }
func (ids IDs) Swap(i, j int)      { ids[i], ids[j] = ids[j], ids[i] }

// IDSet is a set of IDs.
type IDSet map[ID]struct{}

// NewIDSet returns a set holding ids.
func NewIDSet(ids ...ID) IDSet {
	s := make(IDSet, len(ids))
	for _, id := range ids {
		s[id] = struct{}{}
	}
	return s
}

// Has reports whether id is in s.
func (s IDSet) Has(id ID) bool { _, ok := s[id]; return ok }

// Insert adds id to s.
func (s IDSet) Insert(id ID) { s[id] = struct{}{} }

// Delete removes id from s.
func (s IDSet) Delete(id ID) { delete(s, id) }

// List returns the members of s in ascending order.
func (s IDSet) List() IDs {
	out := make(IDs, 0, len(s))
	for id := range s {
		out = append(out, id)
	}
	sortIDs(out)
	return out
}
