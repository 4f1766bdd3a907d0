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
	"io"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/sealgate/sealgate/plugin/policy"
)

// minRSABits is the smallest RSA modulus accepted; cosign never generates
// smaller keys and sigstore's algorithm registry starts at 2048.
const minRSABits = 2048

// maxKeyVerifiedMessage bounds what a key with several accepted schemes
// buffers of one message to try each scheme: a DSSE envelope's PAE or a
// blob given to VerifyBlobBundle.
const maxKeyVerifiedMessage = 64 << 20

// key is a public key made ready to verify: its ID, the sigstore verifiers
// for every scheme cosign signs with using such a key, and, for an
// authority that names a rekorKey, the Rekor log its entries must be in.
type key struct {
	id        string
	pub       crypto.PublicKey
	verifiers []signature.Verifier
	err       error // the key cannot be used; wraps ErrUnsupported
	// rekor holds the authority's own Rekor log (rekorKey), keyed as
	// sigstore-go keys logs (hex of the log ID); nil when it names none.
	rekor    map[string]*root.TransparencyLog
	material root.TrustedMaterial // the key as sigstore-go trusted material
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
	k, loaded := c.m.LoadOrStore(wp, loadKeyAuthority(ka))
	if !loaded {
		runtime.AddCleanup(ka, func(wp weak.Pointer[policy.KeyAuthority]) { c.m.Delete(wp) }, wp)
	}
	return k.(*key)
}

// loadKeyAuthority prepares the authority's key and Rekor log.
func loadKeyAuthority(ka *policy.KeyAuthority) *key {
	k := loadKey(ka.PublicKey)
	if k.err != nil || ka.Rekor == nil {
		return k
	}
	logs, err := rekorLog(ka.Rekor.PublicKey)
	if err != nil {
		k.err = fmt.Errorf("%w: rekorKey %s: %v", ErrUnsupported, ka.Rekor.Path, err)
		return k
	}
	k.rekor = logs
	return k
}

// rekorLog describes a Rekor instance known only by its public key (a
// policy's rekorKey) the way a trusted root describes its logs. The log ID
// is the SHA-256 of the key's DER, as Rekor computes it. Its validity has
// no end and starts at the Unix epoch: sigstore-go refuses a log without a
// start, and the operator vouches for the key as a whole.
func rekorLog(pub crypto.PublicKey) (map[string]*root.TransparencyLog, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key type %T: Rekor signs entry timestamps with ECDSA keys", pub)
	}
	var h crypto.Hash
	switch ec.Curve {
	case elliptic.P256():
		h = crypto.SHA256
	case elliptic.P384():
		h = crypto.SHA384
	case elliptic.P521():
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("ECDSA curve %s is not used by Rekor", ec.Params().Name)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(der)
	return map[string]*root.TransparencyLog{hex.EncodeToString(id[:]): {
		ID:                  id[:],
		ValidityPeriodStart: time.Unix(0, 0),
		HashFunc:            crypto.SHA256,
		PublicKey:           pub,
		SignatureHashFunc:   h,
	}}, nil
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
	k := &key{id: "sha256:" + hex.EncodeToString(sum[:]), pub: pub}

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
		k.err = fmt.Errorf("%w: no verifier for key", ErrUnsupported)
		return k
	}
	kv := keyVerifier{k}
	k.material = root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return kv, nil
	})
	return k
}

// keyVerifier presents a key to sigstore-go: it verifies with each scheme
// the key is accepted with (see loadKey) and is valid at any time, the
// operator having vouched for the key as such. It answers whatever key hint
// a bundle carries: the hint is not authenticated, the signature is.
type keyVerifier struct{ k *key }

var _ root.TimeConstrainedVerifier = keyVerifier{}

func (kv keyVerifier) ValidAtTime(time.Time) bool { return true }

func (kv keyVerifier) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return kv.k.pub, nil
}

func (kv keyVerifier) VerifySignature(sig, msg io.Reader, opts ...signature.VerifyOption) error {
	vs := kv.k.verifiers
	if len(vs) == 1 {
		return vs[0].VerifySignature(sig, msg, opts...)
	}
	sigBytes, err := readBounded(sig, maxKeyVerifiedMessage)
	if err != nil {
		return err
	}
	var msgBytes []byte
	if msg != nil {
		if msgBytes, err = readBounded(msg, maxKeyVerifiedMessage); err != nil {
			return err
		}
	}
	for _, v := range vs {
		var m io.Reader
		if msg != nil {
			m = bytes.NewReader(msgBytes)
		}
		if v.VerifySignature(bytes.NewReader(sigBytes), m, opts...) == nil {
			return nil
		}
	}
	return errors.New("signature does not verify under the key")
}

// readBounded reads r to its end, failing beyond limit bytes.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}
