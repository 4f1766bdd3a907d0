package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

const bundleSLSA = "https://slsa.dev/provenance/v1"

// bundleFixture is a registry on 127.0.0.1 with images the real cosign
// signed: classic signature and attestation, bundle only, and none.
type bundleFixture struct {
	reg                        *testenv.Registry
	cs                         *testenv.Cosign
	classic, bundled, unsigned name.Digest
	policy, hosts              string
	pub                        string // the release key's public half
}

func newBundleFixture(t *testing.T) *bundleFixture {
	t.Helper()
	f := &bundleFixture{reg: testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true}), cs: testenv.NewCosign(t)}
	key, pub, err := f.cs.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	f.pub = pub
	push := func(seed int64, repo string) name.Digest {
		img, err := testenv.RandomImage(seed)
		if err != nil {
			t.Fatal(err)
		}
		d, err := f.reg.Push(img, repo+":v1")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	f.classic = push(1, "app/classic")
	f.bundled = push(2, "bundle/only")
	f.unsigned = push(3, "app/unsigned")
	if err := f.cs.Sign(key, f.classic.String()); err != nil {
		t.Fatal(err)
	}
	pred := filepath.Join(f.cs.Dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://example.com/b/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.com/builder"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.Run("attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, "--tlog-upload=false", "--yes", f.classic.String()); err != nil {
		t.Fatal(err)
	}
	if err := f.cs.Sign(key, f.bundled.String(), "--new-bundle-format"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f.hosts = filepath.Join(dir, "certs.d") // none: every registry at its own name
	f.policy = writeFile(t, dir, "policy.yaml", fmt.Sprintf(`mode: enforce
default: deny
rules:
  - name: app
    images: ["%[1]s/app/**"]
    signatures:
      authorities: [{key: %[2]s}]
    attestations:
      - predicateType: %[3]s
        authorities: [{key: %[2]s}]
  - name: bundles
    images: ["%[1]s/bundle/**"]
    signatures:
      authorities: [{key: %[2]s}]
`, f.reg.Addr, pub, bundleSLSA))
	return f
}

// decide decides on image with src as the only signature source.
func (f *bundleFixture) decide(t *testing.T, src source.Source, image name.Digest) decision.Decision {
	t.Helper()
	p, err := policy.Load(f.policy)
	if err != nil {
		t.Fatal(err)
	}
	c, err := check.New(p, src)
	if err != nil {
		t.Fatal(err)
	}
	e, err := decision.New(p, c)
	if err != nil {
		t.Fatal(err)
	}
	return e.Decide(context.Background(), decision.Request{Image: image.String(), Namespace: "default"})
}

func runBundle(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := dispatch(context.Background(), append([]string{"bundle"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func openLocal(t *testing.T, dir string) *bundlestore.Store {
	t.Helper()
	l, err := bundlestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBundleExportImportOffline: export on a connected machine, import on
// the node, registry gone: the imported material decides, through the same
// verifier and decision engine as the daemon, alone or combined with the
// unreachable registry.
func TestBundleExportImportOffline(t *testing.T) {
	f := newBundleFixture(t)
	file := filepath.Join(t.TempDir(), "signatures.tar")
	if code, _, stderr := runBundle("export", f.unsigned.String(), "-o", file, "--registry-hosts-dir", f.hosts); code != exitFailed || !strings.Contains(stderr, "no signature material") || !strings.Contains(stderr, "--allow-empty") {
		t.Errorf("export of an unsigned image: exit %d, %s; want 1 naming --allow-empty", code, stderr)
	}
	code, stdout, stderr := runBundle("export", f.classic.String(), f.bundled.String(), f.unsigned.String(), "-o", file, "--registry-hosts-dir", f.hosts, "--allow-empty")
	if code != exitOK {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"exported " + f.classic.String() + ": 1 signature, 1 attestation, 0 bundles, manifest",
		"exported " + f.bundled.String() + ": 0 signatures, 0 attestations, 1 bundle, manifest",
		"exported " + f.unsigned.String() + ": 0 signatures, 0 attestations, 0 bundles, manifest",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("export output lacks %q:\n%s", want, stdout)
		}
	}
	store := filepath.Join(t.TempDir(), "bundles")
	code, stdout, stderr = runBundle("import", file, "--store", store)
	if code != exitOK || !strings.Contains(stdout, "imported "+f.classic.String()+": 1 signature, 1 attestation") {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}

	if err := f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	local := openLocal(t, store)
	for _, img := range []name.Digest{f.classic, f.bundled} {
		d := f.decide(t, local, img)
		if !d.Allowed || d.Source != decision.SourceVerified || len(d.SatisfiedBy) == 0 {
			t.Errorf("%s from the store alone: %+v", img, d)
		}
	}
	if d := f.decide(t, local, f.unsigned); d.Allowed || !strings.Contains(strings.Join(d.Reasons, "; "), "no signatures") {
		t.Errorf("unsigned image from the store: %+v", d)
	}

	reg, err := source.NewRegistry(source.WithHostsDir(f.hosts), source.WithTimeout(2e9))
	if err != nil {
		t.Fatal(err)
	}
	both, err := source.NewMulti(local, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []name.Digest{f.classic, f.bundled} {
		if d := f.decide(t, both, img); !d.Allowed {
			t.Errorf("%s from the store with the registry down: %+v", img, d)
		}
	}
	// An image the store knows nothing of: the outage shows.
	never, _ := name.NewDigest(f.reg.Addr + "/app/never@sha256:" + strings.Repeat("ab", 32))
	if d := f.decide(t, both, never); d.Allowed || !strings.Contains(strings.Join(d.Reasons, "; "), "unreachable") {
		t.Errorf("an image never imported, registry down: %+v", d)
	}
}

// TestBundleImportCosignSave: the directory `cosign save --dir` writes is
// imported and decides with the registry gone.
func TestBundleImportCosignSave(t *testing.T) {
	f := newBundleFixture(t)
	layout := filepath.Join(t.TempDir(), "saved")
	if _, err := f.cs.Run("save", "--dir", layout, f.classic.String()); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "bundles")
	code, stdout, stderr := runBundle("import", layout, "--bundle-store", store)
	if code != exitOK || !strings.Contains(stdout, "imported "+f.classic.DigestStr()+": 1 signature, 1 attestation, 0 bundles, manifest") {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	if err := f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t, openLocal(t, store), f.classic); !d.Allowed {
		t.Errorf("after cosign save and import: %+v", d)
	}
}

// TestBundleImportTampered: an export whose signature payload was edited
// (and its digests made consistent again, as an attacker would) imports,
// and is denied by verification: importing grants nothing by itself.
func TestBundleImportTampered(t *testing.T) {
	f := newBundleFixture(t)
	file := filepath.Join(t.TempDir(), "signatures.tar")
	if code, stdout, stderr := runBundle("export", f.classic.String(), "-o", file, "--registry-hosts-dir", f.hosts); code != exitOK {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	tampered := tamperPayload(t, file)
	store := filepath.Join(t.TempDir(), "bundles")
	if code, stdout, stderr := runBundle("import", tampered, "--bundle-store", store); code != exitOK {
		t.Fatalf("import of the tampered file: exit %d\n%s%s", code, stdout, stderr)
	}
	if err := f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	local := openLocal(t, store)
	sigs, err := local.Signatures(context.Background(), f.classic)
	if err != nil || len(sigs) != 1 || !bytes.Contains(sigs[0].Payload, []byte("tampered")) {
		t.Fatalf("the store does not hold the tampered payload: %v", err)
	}
	d := f.decide(t, local, f.classic)
	if d.Allowed {
		t.Fatalf("tampered signature allowed: %+v", d)
	}
	t.Logf("denial: %v", d.Err())
}

// tamperPayload rewrites the export at file: the signature payload says
// something else, its blob is renamed to its new digest and the index
// points at it, so that the file is consistent and only the signature is
// wrong.
func tamperPayload(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type mem struct {
		name string
		body []byte
	}
	var ms []mem
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		ms = append(ms, mem{hdr.Name, body})
	}
	var idxAt int
	var idx map[string]any
	for i, m := range ms {
		if strings.HasSuffix(m.name, "/index.json") {
			idxAt = i
			if err := json.Unmarshal(m.body, &idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	sig := idx["signatures"].([]any)[0].(map[string]any)
	old := sig["digest"].(string)
	for i, m := range ms {
		if !strings.HasSuffix(m.name, "/"+strings.Replace(old, ":", "/", 1)) {
			continue
		}
		payload := bytes.Replace(m.body, []byte(`"optional":`), []byte(`"optional":{"tampered":true},"x":`), 1)
		if bytes.Equal(payload, m.body) {
			t.Fatalf("payload %s has no optional field", m.body)
		}
		sum := sha256.Sum256(payload)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		ms[i] = mem{strings.TrimSuffix(m.name, old[len("sha256:"):]) + digest[len("sha256:"):], payload}
		sig["digest"], sig["size"] = digest, len(payload)
	}
	ms[idxAt].body, _ = json.Marshal(idx)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, m := range ms {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tar.TypeReg})
		tw.Write(m.body)
	}
	tw.Close()
	p := filepath.Join(t.TempDir(), "tampered.tar")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBundleErrors: usage errors exit 2; files that are not an export, or
// larger than allowed, exit 1 with a message that says so, and leave the
// store untouched.
func TestBundleErrors(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	garbage := writeFile(t, dir, "garbage.tar", strings.Repeat("not a tar file ", 100))
	image := "127.0.0.1:1/app@sha256:" + strings.Repeat("a", 64)
	// A real (empty) export, to check the size limit on.
	big := filepath.Join(dir, "big.tar")
	if code, _, stderr := runBundle("export", image, "-o", big, "--registry-hosts-dir", filepath.Join(dir, "none")); code != exitFailed ||
		!strings.Contains(stderr, "unreachable") {
		t.Fatalf("export from a dead registry: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(big); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed export left %s behind: %v", big, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed export left files behind: %v", entries)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", nil, exitUsage, "sealgate bundle [command]"},
		{"unknown subcommand", []string{"publish"}, exitUsage, "unknown subcommand"},
		{"export without images", []string{"export", "-o", "x"}, exitUsage, "at least one IMAGE@DIGEST"},
		{"export without -o", []string{"export", image}, exitUsage, "-o FILE"},
		{"export of a tag", []string{"export", "nginx:latest", "-o", "x"}, exitUsage, "a tag is never trusted"},
		{"import without a file", []string{"import"}, exitUsage, "exactly one FILE or DIR"},
		{"import of a missing file", []string{"import", filepath.Join(dir, "missing.tar"), "--bundle-store", store}, exitFailed, "no such file"},
		{"import of garbage", []string{"import", garbage, "--bundle-store", store}, exitFailed, "not a sealgate export file"},
		{"import over --max-size", []string{"import", garbage, "--bundle-store", store, "--max-size", "100"}, exitFailed, "export file larger than 100 bytes"},
		{"import of a directory that is not a layout", []string{"import", dir, "--bundle-store", store}, exitFailed, "not an OCI image layout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runBundle(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was touched: %v", err)
			}
		})
	}
	if code, stdout, _ := runBundle("--help"); code != exitOK || !strings.Contains(stdout, "grants nothing by itself") {
		t.Errorf("help: exit %d %q", code, stdout)
	}
}

// TestDeprecatedFlagNames: the old names still work, and say which to use.
func TestDeprecatedFlagNames(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runMain("trust", "status", "--dir", dir, "--tpm", "swtpm:127.0.0.1:1")
	if code == exitOK || !strings.Contains(stderr, "--dir is deprecated; use --trust-dir") {
		t.Errorf("trust --dir: exit %d, %q", code, stderr)
	}
	code, _, stderr = runMain("bundle", "import", filepath.Join(dir, "missing.tar"), "--store", dir)
	if !strings.Contains(stderr, "--store is deprecated; use --bundle-store") || !strings.Contains(stderr, "no such file") {
		t.Errorf("bundle import --store: exit %d, %q", code, stderr)
	}
	code, _, stderr = runMain("bundle", "export", "a.io/x@sha256:"+strings.Repeat("a", 64), "--output", filepath.Join(dir, "x.tar"), "--registry-hosts-dir", dir, "--registry-timeout", "1s")
	if !strings.Contains(stderr, "--output is deprecated; use --out") {
		t.Errorf("bundle export --output: exit %d, %q", code, stderr)
	}
}

// TestAdhocAttestationAgreesWithCosign: --type decides as cosign
// verify-attestation does on the same images (real cosign; a key-signed
// SLSA v1 provenance on one image, none on another, and a type the image
// has no attestation of).
func TestAdhocAttestationAgreesWithCosign(t *testing.T) {
	f := newBundleFixture(t)
	for _, tc := range []struct {
		image name.Digest
		typ   string
		ok    bool
	}{
		{f.classic, "slsaprovenance1", true},
		{f.classic, "https://slsa.dev/provenance/v1", true},
		{f.classic, "cyclonedx", false},
		{f.unsigned, "slsaprovenance1", false},
	} {
		_, cosignErr := f.cs.Run("verify-attestation", "--key", f.pub, "--type", tc.typ, "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", tc.image.String())
		code, stdout, stderr := runMain("verify", tc.image.String(), "--key", f.pub, "--type", tc.typ, "--insecure-ignore-tlog", "--registry-hosts-dir", f.hosts)
		if (cosignErr == nil) != tc.ok || (code == exitOK) != tc.ok || code == exitUsage {
			t.Errorf("%s --type %s: cosign err %v; sealgate exit %d\n%s%s", tc.image, tc.typ, cosignErr, code, stdout, stderr)
		}
	}
}
