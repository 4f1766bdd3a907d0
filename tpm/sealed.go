package tpm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
	"github.com/sealgate/sealgate/internal/strictjson"
)

// MaxSealedSize bounds a sealed file ParseSealed reads: a real one is
// under 2 KiB.
const MaxSealedSize = 16 << 10

// maxBlobSize bounds Public and Private (TPM2B structures of a few hundred
// bytes).
const maxBlobSize = 2048

// ParseSealed reads a Sealed from its JSON form, as found on disk, where an
// attacker may have written it: the size is bounded, unknown fields and
// trailing data are refused, and the TPM structures inside are decoded and
// checked to be a sealed data object of the shape Seal makes. Errors wrap
// ErrInvalidSealed.
func ParseSealed(data []byte) (*Sealed, error) {
	if len(data) > MaxSealedSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidSealed, len(data), MaxSealedSize)
	}
	var s Sealed
	if err := strictjson.Unmarshal(data, &s, 4); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSealed, err)
	}
	if _, err := s.decode(); err != nil {
		return nil, err
	}
	return &s, nil
}

// ReadSealed reads and parses a sealed file of at most MaxSealedSize bytes.
func ReadSealed(r io.Reader) (*Sealed, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSealedSize+1))
	if err != nil {
		return nil, fmt.Errorf("read sealed secret: %w", err)
	}
	return ParseSealed(data)
}

// sealedObject is a Sealed decoded into the structures Load takes.
type sealedObject struct {
	public  *tpm2.TPM2BPublic
	private *tpm2.TPM2BPrivate
	pub     *tpm2.TPMTPublic
}

// decode checks a Sealed and decodes its TPM structures. Every byte must
// be accounted for: the structures must re-encode to exactly the bytes
// given.
func (s *Sealed) decode() (obj *sealedObject, err error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil", ErrInvalidSealed)
	}
	// go-tpm's reflective decoder is not written for hostile input; a
	// panic in it is an invalid file, not a crash of the daemon.
	defer func() {
		if r := recover(); r != nil {
			obj, err = nil, fmt.Errorf("%w: undecodable TPM structure: %v", ErrInvalidSealed, r)
		}
	}()
	if len(s.Public) == 0 || len(s.Public) > maxBlobSize || len(s.Private) == 0 || len(s.Private) > maxBlobSize {
		return nil, fmt.Errorf("%w: public (%d bytes) and private (%d bytes) must be 1 to %d bytes", ErrInvalidSealed, len(s.Public), len(s.Private), maxBlobSize)
	}
	public, err := tpm2.Unmarshal[tpm2.TPM2BPublic](s.Public)
	if err != nil || !bytes.Equal(tpm2.Marshal(public), s.Public) {
		return nil, fmt.Errorf("%w: public area is not one TPM2B_PUBLIC", ErrInvalidSealed)
	}
	pub, err := public.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: public area: %v", ErrInvalidSealed, err)
	}
	if err := checkSealedPublic(pub); err != nil {
		return nil, err
	}
	private, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](s.Private)
	if err != nil || !bytes.Equal(tpm2.Marshal(private), s.Private) {
		return nil, fmt.Errorf("%w: private area is not one TPM2B_PRIVATE", ErrInvalidSealed)
	}
	if len(s.PCRValues) != len(s.PCRs) {
		return nil, fmt.Errorf("%w: %d PCR values for %d PCRs", ErrInvalidSealed, len(s.PCRValues), len(s.PCRs))
	}
	for i, p := range s.PCRs {
		if err := checkPCR(p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidSealed, err)
		}
		if i > 0 && p <= s.PCRs[i-1] {
			return nil, fmt.Errorf("%w: PCRs %v not strictly ascending", ErrInvalidSealed, s.PCRs)
		}
		if len(s.PCRValues[i]) != sha256.Size {
			return nil, fmt.Errorf("%w: PCR %d value of %d bytes, want %d", ErrInvalidSealed, p, len(s.PCRValues[i]), sha256.Size)
		}
	}
	if s.CounterIndex != 0 && s.CounterIndex>>24 != uint32(tpm2.TPMHTNVIndex) {
		return nil, fmt.Errorf("%w: counter index %#08x is not an NV index", ErrInvalidSealed, s.CounterIndex)
	}
	return &sealedObject{public: public, private: private, pub: pub}, nil
}

// checkSealedPublic checks that a public area is that of a secret Seal
// made: a policy-only, non-duplicable, NoDA sealed data object.
func checkSealedPublic(pub *tpm2.TPMTPublic) error {
	want := sealedTemplate(make([]byte, sha256.Size)).ObjectAttributes
	switch {
	case pub.Type != tpm2.TPMAlgKeyedHash:
		return fmt.Errorf("%w: object type %v, want a sealed data object (KEYEDHASH)", ErrInvalidSealed, pub.Type)
	case pub.NameAlg != tpm2.TPMAlgSHA256:
		return fmt.Errorf("%w: name algorithm %v, want SHA256", ErrInvalidSealed, pub.NameAlg)
	case pub.ObjectAttributes != want:
		return fmt.Errorf("%w: object attributes differ from a sealgate sealed secret's (policy only, fixed to this TPM, NoDA)", ErrInvalidSealed)
	case len(pub.AuthPolicy.Buffer) != sha256.Size:
		return fmt.Errorf("%w: policy digest of %d bytes, want %d", ErrInvalidSealed, len(pub.AuthPolicy.Buffer), sha256.Size)
	}
	params, err := pub.Parameters.KeyedHashDetail()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSealed, err)
	}
	if params.Scheme.Scheme != tpm2.TPMAlgNull {
		return fmt.Errorf("%w: keyed-hash scheme %v, want none (a sealed data object)", ErrInvalidSealed, params.Scheme.Scheme)
	}
	return nil
}
