package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/sealgate/sealgate/plugin/policy"
)

// WithPEMRoots adds trust roots given as PEM files: each Fulcio and TSA
// file is a certificate chain (any order; the self-signed certificate is
// the root, a TSA's leaf is the one that signs timestamps), each Rekor and
// CT log file a public key whose log ID is the SHA-256 of its DER form, as
// Rekor and RFC 6962 define it. They are turned into the same trusted
// material a trusted_root.json yields.
func WithPEMRoots(r policy.PEMRoots) Option {
	return func(o *options) error {
		tr, err := pemTrustedRoot(r)
		if err != nil {
			return err
		}
		o.material = append(o.material, tr)
		return nil
	}
}

// unboundedStart stands for "no start given": sigstore-go takes a zero
// start as "never valid" for transparency logs.
var unboundedStart = time.Unix(0, 0).UTC()

func from(t time.Time) time.Time {
	if t.IsZero() {
		return unboundedStart
	}
	return t
}

func pemTrustedRoot(r policy.PEMRoots) (*root.TrustedRoot, error) {
	var cas []root.CertificateAuthority
	for _, m := range r.Fulcio {
		rt, inter, leaf, err := chain(m)
		if err != nil {
			return nil, err
		}
		if leaf != nil {
			return nil, fmt.Errorf("Fulcio chain %s: holds a certificate that is not a CA (%s); give the CA certificates only", m.File, leaf.Subject)
		}
		cas = append(cas, &root.FulcioCertificateAuthority{Root: rt, Intermediates: inter, ValidityPeriodStart: from(m.ValidFrom), ValidityPeriodEnd: m.ValidUntil})
	}
	var tsas []root.TimestampingAuthority
	for _, m := range r.TSA {
		rt, inter, leaf, err := chain(m)
		if err != nil {
			return nil, err
		}
		if leaf == nil {
			return nil, fmt.Errorf("TSA chain %s: no leaf certificate (the one that signs timestamps)", m.File)
		}
		tsas = append(tsas, &root.SigstoreTimestampingAuthority{Root: rt, Intermediates: inter, Leaf: leaf, ValidityPeriodStart: from(m.ValidFrom), ValidityPeriodEnd: m.ValidUntil})
	}
	rekor, err := logs(r.Rekor, "Rekor")
	if err != nil {
		return nil, err
	}
	ct, err := logs(r.CTLogs, "CT log")
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ct, tsas, rekor)
	if err != nil {
		return nil, fmt.Errorf("PEM trust roots: %w", err)
	}
	return tr, nil
}

// chain splits a PEM certificate chain into its self-signed root, the
// intermediates (CA certificates) and, when there is one, the leaf (a
// certificate that is not a CA).
func chain(m policy.PEMMaterial) (rt *x509.Certificate, inter []*x509.Certificate, leaf *x509.Certificate, err error) {
	rest := m.PEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, nil, nil, fmt.Errorf("%s: a %s block; a chain holds CERTIFICATE blocks only", m.File, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", m.File, err)
		}
		switch {
		case !c.IsCA:
			if leaf != nil {
				return nil, nil, nil, fmt.Errorf("%s: more than one leaf certificate", m.File)
			}
			leaf = c
		case c.CheckSignatureFrom(c) == nil && bytesEqual(c.RawIssuer, c.RawSubject):
			if rt != nil {
				return nil, nil, nil, fmt.Errorf("%s: more than one self-signed root", m.File)
			}
			rt = c
		default:
			inter = append(inter, c)
		}
	}
	if rt == nil {
		return nil, nil, nil, fmt.Errorf("%s: no self-signed root certificate", m.File)
	}
	return rt, inter, leaf, nil
}

func logs(ms []policy.PEMMaterial, what string) (map[string]*root.TransparencyLog, error) {
	out := map[string]*root.TransparencyLog{}
	for _, m := range ms {
		b, _ := pem.Decode(m.PEM)
		if b == nil || b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s key %s: no PUBLIC KEY block", what, m.File)
		}
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", what, m.File, err)
		}
		sum := sha256.Sum256(b.Bytes)
		id := hex.EncodeToString(sum[:])
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%s key %s: listed twice", what, m.File)
		}
		h, err := signatureHash(pub)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", what, m.File, err)
		}
		out[id] = &root.TransparencyLog{ID: sum[:], PublicKey: pub, HashFunc: crypto.SHA256, SignatureHashFunc: h,
			ValidityPeriodStart: from(m.ValidFrom), ValidityPeriodEnd: m.ValidUntil}
	}
	return out, nil
}

// signatureHash is the hash a log signs with for its key type.
func signatureHash(pub crypto.PublicKey) (crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return crypto.SHA384, nil
		case elliptic.P521():
			return crypto.SHA512, nil
		}
		return crypto.SHA256, nil
	case *rsa.PublicKey:
		return crypto.SHA256, nil
	case ed25519.PublicKey:
		return crypto.Hash(0), nil // Ed25519 signs the message itself
	}
	return 0, errors.New("unsupported key type (want ECDSA, RSA or Ed25519)")
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
