package crypto

// OpenInPlace verifies and decrypts sealed (IV || ciphertext || MAC) in
// place and returns the plaintext, which is sealed[IVSize:len(sealed)-16]:
// it writes no other memory and allocates nothing. sealed is left as it
// was if the MAC does not match (ErrUnauthenticated). It is for callers
// that read a sealed object only to check or consume it once.
func (k *Key) OpenInPlace(sealed []byte) ([]byte, error) {
	iv, ct, err := k.verify(sealed)
	if err != nil {
		return nil, err
	}
	newCTR(k, iv).XORKeyStream(ct, ct)
	return ct, nil
}

// OpenPieces verifies the MAC of sealed (IV || ciphertext || MAC) and then
// decrypts the ciphertext piece by piece into buf, len(buf) bytes at a
// time, calling fn with each piece's offset in the plaintext and the piece
// (valid until fn returns). sealed is not modified. It returns
// ErrUnauthenticated, without calling fn, if the MAC does not match.
func (k *Key) OpenPieces(sealed, buf []byte, fn func(off int, plain []byte)) error {
	if len(buf) == 0 {
		panic("crypto: OpenPieces with an empty buffer")
	}
	iv, ct, err := k.verify(sealed)
	if err != nil {
		return err
	}
	s := newCTR(k, iv)
	for off := 0; off < len(ct); off += len(buf) {
		n := min(len(buf), len(ct)-off)
		s.XORKeyStream(buf[:n], ct[off:off+n])
		fn(off, buf[:n])
	}
	return nil
}
