package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
)

// fixture is a registry on 127.0.0.1 holding signed images, and the policy
// that requires those signatures.
type fixture struct {
	reg    *testenv.Registry
	images []name.Digest
	policy string
}

// slsaV1 is the predicate type the bundle scheme signs.
const slsaV1 = "https://slsa.dev/provenance/v1"

// newFixture pushes n distinct images to a new registry (with or without
// the referrers API) and signs each with one key: as key-signed SLSA
// provenance in a Sigstore bundle referrer (scheme "bundle"), or as a
// cosign classic .sig (scheme "classic"). The policy is written to dir.
func newFixture(dir string, n int, referrers bool, scheme string) (*fixture, error) {
	reg, err := testenv.StartRegistry(testenv.RegistryOptions{Referrers: referrers})
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	f := &fixture{reg: reg}
	for i := range n {
		img, err := testenv.RandomImage(int64(i) + 1)
		if err != nil {
			return nil, err
		}
		d, err := reg.Push(img, fmt.Sprintf("load/app-%d:v%d", i%50, i))
		if err != nil {
			return nil, err
		}
		if err := sign(reg, key, d, scheme); err != nil {
			return nil, fmt.Errorf("sign %s: %w", d, err)
		}
		f.images = append(f.images, d)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	requirement := "    signatures:\n      authorities: [{key: release.pub}]\n"
	if scheme == "bundle" {
		requirement = "    attestations:\n      - predicateType: " + slsaV1 + "\n        authorities: [{key: release.pub}]\n"
	}
	f.policy = filepath.Join(dir, "policy.yaml")
	pol := "mode: enforce\ndefault: deny\nrules:\n  - name: load\n    images: [\"" + reg.Addr + "/load/**\"]\n" + requirement
	return f, os.WriteFile(f.policy, []byte(pol), 0o644)
}

func sign(reg *testenv.Registry, key *ecdsa.PrivateKey, d name.Digest, scheme string) error {
	switch scheme {
	case "classic":
		payload, err := testenv.SimpleSigningPayload(d)
		if err != nil {
			return err
		}
		h := sha256.Sum256(payload)
		sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
		if err != nil {
			return err
		}
		_, err = reg.PushCosignSignatures(d, testenv.CosignSignature{Payload: payload, Signature: sig})
		return err
	case "bundle":
		st, err := testenv.Statement(slsaV1, d.DigestStr(), map[string]any{"buildDefinition": map[string]any{"buildType": "https://example.com/build/v1"}})
		if err != nil {
			return err
		}
		_, sig, err := testenv.DSSESign(key, testenv.InTotoPayloadType, st)
		if err != nil {
			return err
		}
		b, err := testenv.DSSEBundle(testenv.BundleOptions{PublicKey: key.Public()}, testenv.InTotoPayloadType, st, sig)
		if err != nil {
			return err
		}
		_, err = reg.PushBundle(d, b)
		return err
	}
	return fmt.Errorf("unknown scheme %q: want bundle or classic", scheme)
}
