package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/sealgate/sealgate/plugin/policy"
)

// minRSABits is the smallest RSA modulus accepted; cosign never generates
// smaller keys and sigstore's algorithm registry starts at 2048.
const minRSABits = 2048

// key is a public key made ready to verify: its ID and the sigstore
// verifiers for every scheme cosign signs with using such a key.
type key struct {
	id        string
	verifiers []signature.Verifier
	err       error // the key cannot be used; wraps ErrUnsupported
}

// verify reports whether any of the key's schemes verifies sig over payload.
func (k *key) verify(sig, payload []byte) bool {
	for _, v := range k.verifiers {
		if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)) == nil {
			return true
		}
	}
	return false
}

// keyCache builds each key's verifiers once. Entries are keyed by a weak
// pointer to the policy's KeyAuthority and dropped when that authority is
// garbage collected, so policy reloads do not grow the cache.
type keyCache struct {
	m sync.Map // weak.Pointer[policy.KeyAuthority] -> *key
}

func (c *keyCache) get(ka *policy.KeyAuthority) *key {
	if ka == nil {
		return &key{err: fmt.Errorf("%w: no key", ErrUnsupported)}
	}
	wp := weak.Make(ka)
	if k, ok := c.m.Load(wp); ok {
		return k.(*key)
	}
	k, loaded := c.m.LoadOrStore(wp, loadKey(ka.PublicKey))
	if !loaded {
		runtime.AddCleanup(ka, func(wp weak.Pointer[policy.KeyAuthority]) { c.m.Delete(wp) }, wp)
	}
	return k.(*key)
}

// loadKey prepares pub. cosign v2 signs with sigstore's default scheme for
// the key (ECDSA with the curve's hash, Ed25519ph for images, PKCS#1 v1.5
// SHA-256 for RSA) but verifies with SHA-256 and pure Ed25519, and older
// releases signed that way too, so both are accepted: each is a sound
// scheme for the key, and a signature made with either is the key owner's.
func loadKey(pub crypto.PublicKey) *key {
	if pub == nil {
		return &key{err: fmt.Errorf("%w: no public key loaded", ErrUnsupported)}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return &key{err: fmt.Errorf("%w: public key: %v", ErrUnsupported, err)}
	}
	sum := sha256.Sum256(der)
	k := &key{id: "sha256:" + hex.EncodeToString(sum[:])}

	var loaders []func() (signature.Verifier, error)
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			loaders = append(loaders, func() (signature.Verifier, error) { return signature.LoadDefaultVerifier(pk) })
		case elliptic.P384(), elliptic.P521():
			loaders = append(loaders,
				func() (signature.Verifier, error) { return signature.LoadDefaultVerifier(pk) },
				func() (signature.Verifier, error) { return signature.LoadVerifier(pk, crypto.SHA256) })
		default:
			k.err = fmt.Errorf("%w: ECDSA curve %s (use P-256, P-384 or P-521)", ErrUnsupported, pk.Params().Name)
			return k
		}
	case ed25519.PublicKey:
		loaders = append(loaders,
			func() (signature.Verifier, error) { return signature.LoadDefaultVerifier(pk) },
			func() (signature.Verifier, error) {
				return signature.LoadDefaultVerifier(pk, sigopts.WithED25519ph())
			})
	case *rsa.PublicKey:
		if pk.N == nil || pk.N.BitLen() < minRSABits {
			k.err = fmt.Errorf("%w: RSA key shorter than %d bits", ErrUnsupported, minRSABits)
			return k
		}
		loaders = append(loaders, func() (signature.Verifier, error) { return signature.LoadVerifier(pk, crypto.SHA256) })
	default:
		k.err = fmt.Errorf("%w: key type %T", ErrUnsupported, pub)
		return k
	}
	for _, load := range loaders {
		v, err := load()
		if err != nil {
			k.err = fmt.Errorf("%w: %v", ErrUnsupported, err)
			k.verifiers = nil
			return k
		}
		k.verifiers = append(k.verifiers, v)
	}
	if len(k.verifiers) == 0 {
		k.err = errors.New("no verifier for key")
	}
	return k
}
