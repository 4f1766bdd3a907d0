package plugin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
)

// bundleFixture holds images signed and attested by the real cosign CLI in
// the Sigstore bundle format and in cosign's classic .att scheme, on two
// registries on 127.0.0.1: one with the OCI 1.1 referrers API, one without
// (where cosign falls back to the sha256-<hex> tag index).
type bundleFixture struct {
	regs    map[string]*testenv.Registry // "referrers", "tags"
	dir     string
	digests map[string]name.Digest // "<registry kind>/<case>"
}

var (
	bundleOnce sync.Once
	bundleFix  *bundleFixture
	bundleErr  error
)

const (
	slsaV1    = "https://slsa.dev/provenance/v1"
	buildType = "https://example.com/build/v1"
)

func loadBundleFixture(t testing.TB) *bundleFixture {
	t.Helper()
	bin := testenv.RequireTool(t, "cosign")
	bundleOnce.Do(func() { bundleFix, bundleErr = buildBundleFixture(bin) })
	if bundleErr != nil {
		t.Fatalf("build fixture: %v", bundleErr)
	}
	return bundleFix
}

func buildBundleFixture(cosignBin string) (*bundleFixture, error) {
	dir, err := os.MkdirTemp("", "sealgate-bundle-test-")
	if err != nil {
		return nil, err
	}
	f := &bundleFixture{regs: map[string]*testenv.Registry{}, dir: dir, digests: map[string]name.Digest{}}
	for kind, referrers := range map[string]bool{"referrers": true, "tags": false} {
		if f.regs[kind], err = testenv.StartRegistry(testenv.RegistryOptions{Referrers: referrers}); err != nil {
			return nil, err
		}
	}
	cs := &testenv.Cosign{Bin: cosignBin, Dir: dir}
	key, _, err := cs.GenerateKeyPair("release")
	if err != nil {
		return nil, err
	}
	predicate := func(name, bt string) (string, error) {
		p := filepath.Join(dir, name+".json")
		body := fmt.Sprintf(`{"buildDefinition":{"buildType":%q,"externalParameters":{}},"runDetails":{"builder":{"id":"https://example.com/builder"}}}`, bt)
		return p, os.WriteFile(p, []byte(body), 0o600)
	}
	good, err := predicate("good", buildType)
	if err != nil {
		return nil, err
	}
	other, err := predicate("other", "https://example.com/other-build/v1")
	if err != nil {
		return nil, err
	}
	attest := func(ref, pred, typ string, extra ...string) error {
		args := append([]string{"attest", "--key", key, "--type", typ, "--predicate", pred, "--tlog-upload=false", "--yes"}, extra...)
		out, err := cs.Run(append(args, ref)...)
		if err != nil {
			return fmt.Errorf("cosign attest %s: %v\n%s", ref, err, out)
		}
		return nil
	}
	bundle := "--new-bundle-format"
	seed := int64(100)
	for kind, reg := range f.regs {
		push := func(c string) (name.Digest, error) {
			seed++
			img, err := testenv.RandomImage(seed)
			if err != nil {
				return name.Digest{}, err
			}
			d, err := reg.Push(img, c+":v1")
			f.digests[kind+"/"+c] = d
			return d, err
		}
		steps := map[string]func(d name.Digest) error{
			// Image signatures in the bundle format only.
			"bundle/signed":   func(d name.Digest) error { return cs.Sign(key, d.String(), bundle) },
			"bundle/unsigned": func(name.Digest) error { return nil },
			// Classic signature plus an attestation, in each format.
			"att/classic": func(d name.Digest) error {
				if err := cs.Sign(key, d.String()); err != nil {
					return err
				}
				return attest(d.String(), good, "slsaprovenance1")
			},
			"att/bundle": func(d name.Digest) error {
				if err := cs.Sign(key, d.String()); err != nil {
					return err
				}
				return attest(d.String(), good, "slsaprovenance1", bundle)
			},
			"att/othertype": func(d name.Digest) error {
				if err := cs.Sign(key, d.String()); err != nil {
					return err
				}
				return attest(d.String(), good, "https://example.com/other-predicate/v1")
			},
			"att/condition-false": func(d name.Digest) error {
				if err := cs.Sign(key, d.String()); err != nil {
					return err
				}
				return attest(d.String(), other, "slsaprovenance1", bundle)
			},
			"att/missing": func(d name.Digest) error { return cs.Sign(key, d.String()) },
		}
		// Fixed order: "att/othersubject" copies att/classic's attestation.
		for _, c := range []string{"bundle/signed", "bundle/unsigned", "att/classic", "att/bundle", "att/othertype", "att/condition-false", "att/missing"} {
			d, err := push(c)
			if err != nil {
				return nil, err
			}
			if err := steps[c](d); err != nil {
				return nil, fmt.Errorf("%s %s: %w", kind, c, err)
			}
		}
		d, err := push("att/othersubject")
		if err != nil {
			return nil, err
		}
		if err := cs.Sign(key, d.String()); err != nil {
			return nil, err
		}
		src := f.digests[kind+"/att/classic"]
		if err := reg.CopyManifest(attTag(src), attTag(d)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func attTag(d name.Digest) string {
	return d.Context().String() + ":" + strings.Replace(d.DigestStr(), ":", "-", 1) + ".att"
}

func (f *bundleFixture) writePolicy(t testing.TB, condition string) string {
	t.Helper()
	var images []string
	for _, reg := range f.regs {
		images = append(images, fmt.Sprintf("%q", reg.Addr+"/%s/**"))
	}
	imgs := func(repo string) string { return strings.ReplaceAll("["+strings.Join(images, ", ")+"]", "%s", repo) }
	key := filepath.Join(f.dir, "release.pub")
	text := fmt.Sprintf(`mode: enforce
default: deny
rules:
  - name: bundles
    images: %s
    signatures:
      authorities: [{key: %s}]
  - name: provenance
    images: %s
    signatures:
      authorities: [{key: %s}]
    attestations:
      - predicateType: %s
        authorities: [{key: %s}]
        conditions: [%q]
`, imgs("bundle"), key, imgs("att"), key, slsaV1, key, condition)
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBundlesAndAttestations decides, through NRI's real runtime side, on
// images that cosign signed and attested in each format, on a registry with
// and without the referrers API.
func TestBundlesAndAttestations(t *testing.T) {
	f := loadBundleFixture(t)
	n := startNode(t, f.writePolicy(t, fmt.Sprintf("predicate.buildDefinition.buildType == %q", buildType)))
	tests := []struct {
		image  string
		reason string // empty: allowed
	}{
		{"bundle/signed", ""},
		{"bundle/unsigned", "no signatures found"},
		{"att/classic", ""},
		{"att/bundle", ""},
		{"att/othertype", "attestation " + slsaV1},
		{"att/condition-false", "condition"},
		{"att/missing", "attestation " + slsaV1},
		{"att/othersubject", "attestation " + slsaV1},
	}
	for _, kind := range []string{"referrers", "tags"} {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.image, func(t *testing.T) {
				d := f.digests[kind+"/"+tt.image]
				err := n.create(t, d, "v1")
				if tt.reason == "" {
					if err != nil {
						t.Fatalf("denied, want allowed: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatal("allowed, want denied")
				}
				t.Logf("denial: %v", err)
				if !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), d.DigestStr()) {
					t.Errorf("error %q\nwant reason %q", err, tt.reason)
				}
			})
		}
	}
}

// TestAttestationConditionDenies: the same attested image is denied when
// the policy's CEL condition asks for another build type.
func TestAttestationConditionDenies(t *testing.T) {
	f := loadBundleFixture(t)
	n := startNode(t, f.writePolicy(t, `predicate.buildDefinition.buildType == "https://example.com/never/v1"`))
	for _, img := range []string{"referrers/att/classic", "tags/att/bundle"} {
		err := n.create(t, f.digests[img], "v1")
		if err == nil || !strings.Contains(err.Error(), "condition") {
			t.Errorf("%s: err = %v, want a denial naming the condition", img, err)
		}
	}
}
