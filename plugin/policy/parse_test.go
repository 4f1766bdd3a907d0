package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// y joins lines, so that a case's line N is argument N.
func y(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// testPath is the path error cases are parsed under: relative files resolve
// against testdata/.
const testPath = "testdata/policy.yaml"

func abs(t *testing.T, rel string) string {
	t.Helper()
	a, err := filepath.Abs(filepath.Join("testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadFull(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Path != "testdata/full.yaml" || p.Mode != ModeEnforce || p.Default != ActionDeny {
		t.Errorf("header = %q %q %q", p.Path, p.Mode, p.Default)
	}
	if p.Offline.MaxVerdictAge != 168*time.Hour {
		t.Errorf("MaxVerdictAge = %v", p.Offline.MaxVerdictAge)
	}
	if want := []string{abs(t, "roots/trusted_root.json")}; !equal(p.TrustedRoots, want) {
		t.Errorf("TrustedRoots = %q, want %q", p.TrustedRoots, want)
	}
	if !strings.HasPrefix(p.Digest, "sha256:") || len(p.Digest) != len("sha256:")+64 {
		t.Errorf("Digest = %q", p.Digest)
	}
	wantFiles := []string{abs(t, "keys/ecdsa-p256.pub"), abs(t, "keys/ecdsa-p384.pub"), abs(t, "keys/ed25519.pub"), abs(t, "keys/rekor.pub"), abs(t, "keys/rsa2048.pub"), abs(t, "roots/trusted_root.json")}
	if !equal(p.Files(), wantFiles) {
		t.Errorf("Files = %q, want %q", p.Files(), wantFiles)
	}
	if len(p.Rules) != 4 {
		t.Fatalf("got %d rules, want 4", len(p.Rules))
	}

	infra, blocked, myorg, attested := p.Rules[0], p.Rules[1], p.Rules[2], p.Rules[3]
	if infra.Name != "infra" || infra.Line != 8 || infra.Action != ActionAllow || infra.Mode != ModeEnforce || infra.Signatures != nil {
		t.Errorf("infra = %+v", infra)
	}
	if want := []string{"registry.k8s.io/pause:*", "registry.k8s.io/pause@*"}; !equal(infra.Images, want) {
		t.Errorf("infra.Images = %q", infra.Images)
	}
	if blocked.Action != ActionDeny || !equal(blocked.Namespaces, []string{"kube-*", "prod"}) ||
		!equal(blocked.Images, []string{"docker.io/library/busybox", "docker.io/library/nginx:*"}) {
		t.Errorf("blocked = %+v", blocked)
	}

	if myorg.Action != ActionVerify || myorg.Mode != ModeWarn || myorg.Line != 15 {
		t.Errorf("myorg = %+v", myorg)
	}
	if want := []string{"registry.example.com/myorg/**", "docker.io/myorg/app"}; !equal(myorg.Images, want) {
		t.Errorf("myorg.Images = %q", myorg.Images)
	}
	s := myorg.Signatures
	if s == nil || s.Threshold != 2 || s.SignedIdentity != MatchAny || !s.AcceptPlatformSignature || len(s.Authorities) != 3 {
		t.Fatalf("myorg.Signatures = %+v", s)
	}
	k0 := s.Authorities[0]
	if k0.Name != "key keys/ecdsa-p256.pub" || k0.Keyless != nil || k0.Key == nil ||
		k0.Key.Path != "keys/ecdsa-p256.pub" || k0.Key.File != abs(t, "keys/ecdsa-p256.pub") {
		t.Errorf("authority 0 = %+v", k0)
	}
	pemBytes, _ := os.ReadFile("testdata/keys/ecdsa-p256.pub")
	if string(k0.Key.PEM) != string(pemBytes) {
		t.Errorf("authority 0 PEM differs from the file")
	}
	if ec, ok := k0.Key.PublicKey.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
		t.Errorf("authority 0 key = %T", k0.Key.PublicKey)
	}
	if k0.TransparencyLog != TlogRequired || k0.Key.Rekor == nil || k0.Key.Rekor.Path != "keys/rekor.pub" ||
		k0.Key.Rekor.File != abs(t, "keys/rekor.pub") {
		t.Errorf("authority 0 rekor = %+v, tlog %q", k0.Key.Rekor, k0.TransparencyLog)
	} else if rekorPEM, _ := os.ReadFile("testdata/keys/rekor.pub"); string(k0.Key.Rekor.PEM) != string(rekorPEM) {
		t.Errorf("authority 0 rekorKey PEM differs from the file")
	} else if _, ok := k0.Key.Rekor.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("authority 0 rekorKey = %T", k0.Key.Rekor.PublicKey)
	}
	if _, ok := s.Authorities[1].Key.PublicKey.(ed25519.PublicKey); !ok {
		t.Errorf("authority 1 key = %T", s.Authorities[1].Key.PublicKey)
	}
	if a1 := s.Authorities[1]; a1.TransparencyLog != TlogRequired || a1.Key.Rekor != nil {
		t.Errorf("authority 1 tlog = %q, rekor %+v", a1.TransparencyLog, a1.Key.Rekor)
	}
	kl := s.Authorities[2]
	if kl.Key != nil || kl.Keyless == nil || kl.Keyless.Issuer != "https://token.actions.githubusercontent.com" ||
		kl.Keyless.IssuerRegExp != nil || kl.Keyless.Subject != "" || kl.Keyless.SubjectRegExp == nil {
		t.Fatalf("authority 2 = %+v", kl)
	}
	if kl.Name != `keyless https://token.actions.githubusercontent.com ^https://github\.com/myorg/.+@refs/tags/v.+$`+
		` repo=https://github.com/myorg/app ref=^refs/tags/v signer=^https://github\.com/myorg/app/\.github/workflows/release\.yml@` {
		t.Errorf("authority 2 name = %q", kl.Name)
	}
	if kl.TransparencyLog != TlogOptional {
		t.Errorf("authority 2 tlog = %q, want optional as written", kl.TransparencyLog)
	}
	if e := kl.Keyless; e.SourceRepositoryURI.Exact != "https://github.com/myorg/app" || e.SourceRepositoryURI.RegExp != nil ||
		e.SourceRepositoryRef.Exact != "" || !e.SourceRepositoryRef.Match("refs/tags/v1.2") || e.SourceRepositoryRef.Match("refs/heads/main") ||
		!e.BuildSignerURI.Match("https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1") ||
		e.BuildSignerURI.Match("https://github.com/myorg/app/.github/workflows/other.yml@refs/tags/v1") {
		t.Errorf("authority 2 extensions = %+v", e)
	}
	if !kl.Keyless.SubjectRegExp.MatchString("https://github.com/myorg/app/.github/workflows/r.yml@refs/tags/v1") ||
		kl.Keyless.SubjectRegExp.MatchString("https://github.com/other/app@refs/tags/v1") {
		t.Errorf("subject regexp %q compiled wrong", kl.Keyless.SubjectRegExp)
	}
	if len(myorg.Attestations) != 1 || myorg.Attestations[0].PredicateType != "https://slsa.dev/provenance/v1" ||
		len(myorg.Attestations[0].Authorities) != 1 {
		t.Fatalf("myorg.Attestations = %+v", myorg.Attestations)
	}
	if rk, ok := myorg.Attestations[0].Authorities[0].Key.PublicKey.(*rsa.PublicKey); !ok || rk.N.BitLen() != 2048 {
		t.Errorf("attestation key = %T", myorg.Attestations[0].Authorities[0].Key.PublicKey)
	}
	if att := myorg.Attestations[0]; att.Line != 36 || len(att.Conditions) != 2 || att.Conditions[0].Line != 39 || att.Conditions[1].Line != 40 ||
		att.Conditions[1].Expr != `subject.exists(s, s.digest.sha256 != "")` || att.Conditions[0].Program == nil {
		t.Errorf("myorg attestation = %+v", att)
	}
	if a := myorg.Attestations[0].Authorities[0]; a.TransparencyLog != TlogOptional {
		t.Errorf("attestation key tlog = %q, want optional (key without rekorKey)", a.TransparencyLog)
	}

	if attested.Signatures != nil || len(attested.Attestations) != 1 || attested.Action != ActionVerify || len(attested.Namespaces) != 0 {
		t.Fatalf("attested = %+v", attested)
	}
	ak := attested.Attestations[0].Authorities[0].Keyless
	if ak == nil || ak.IssuerRegExp == nil || ak.Subject != "release@example.com" ||
		ak.SourceRepositoryRef.Exact != "refs/heads/main" || ak.BuildSignerURI.Exact != "https://ci.example.com/release" || !ak.SourceRepositoryURI.IsZero() {
		t.Errorf("attested keyless = %+v", ak)
	}
	if a := attested.Attestations[0]; a.Line != 44 || len(a.Conditions) != 0 || a.Authorities[0].TransparencyLog != TlogRequired ||
		a.Authorities[0].Name != `keyless ^https://accounts\.example\.com$ release@example.com ref=refs/heads/main signer=https://ci.example.com/release` {
		t.Errorf("attested attestation = %+v, authority %+v", a, a.Authorities[0])
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want func(*Policy) string
	}{
		{"minimal", y("default: deny", "rules: []"), func(p *Policy) string {
			if p.Mode != ModeEnforce || p.Default != ActionDeny || len(p.Rules) != 0 || p.Offline.MaxVerdictAge != 0 || len(p.TrustedRoots) != 0 {
				return "defaults wrong"
			}
			return ""
		}},
		{"empty mapping", y("{}"), func(p *Policy) string {
			if p.Mode != ModeEnforce || p.Default != ActionDeny {
				return "defaults wrong"
			}
			return ""
		}},
		{"allow default, audit", y("mode: audit", "default: allow"), func(p *Policy) string {
			if p.Mode != ModeAudit || p.Default != ActionAllow {
				return "header wrong"
			}
			return ""
		}},
		{"rule defaults", y(
			"mode: warn",
			"rules:",
			"  - name: a",
			"    images: [nginx]",
			"    signatures:",
			"      authorities: [{key: keys/ecdsa-p384.pub}]",
		), func(p *Policy) string {
			r := p.Rules[0]
			if r.Action != ActionVerify || r.Mode != ModeWarn || r.Signatures.Threshold != 1 ||
				r.Signatures.SignedIdentity != MatchRepository || r.Signatures.AcceptPlatformSignature || r.Namespaces != nil {
				return "rule defaults wrong"
			}
			return ""
		}},
		{"maxVerdictAge 0", y("offline:", "  maxVerdictAge: 0"), func(p *Policy) string {
			if p.Offline.MaxVerdictAge != 0 {
				return "age not 0"
			}
			return ""
		}},
		{"maxVerdictAge 90m", y("offline:", "  maxVerdictAge: 90m"), func(p *Policy) string {
			if p.Offline.MaxVerdictAge != 90*time.Minute {
				return "age not 90m"
			}
			return ""
		}},
		{"trustedRoot list and absolute path", y("trustedRoot: [roots/trusted_root.json, " + abs(t, "roots/trusted_root.json") + "x]"), nil},
		{"yaml int forms", y(
			"rules:",
			"  - name: a",
			"    images: [nginx]",
			"    signatures:",
			"      threshold: 0x2",
			"      authorities: [{key: keys/ecdsa-p384.pub}, {key: keys/ed25519.pub}]",
		), func(p *Policy) string {
			if p.Rules[0].Signatures.Threshold != 2 {
				return "threshold not 2"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				// Expected to fail on the missing ...jsonx file: proves the
				// absolute path is used as written.
				_, err := Parse(testPath, tc.data)
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(e.Msg, "trusted_root.jsonx does not exist") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			p, err := Parse(testPath, tc.data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if msg := tc.want(p); msg != "" {
				t.Errorf("%s: %+v", msg, p)
			}
		})
	}
}

// rule1 starts a policy with one rule named a, images on line 3.
var rule1 = []string{"rules:", "  - name: a", "    images: [x.io/a]"}

// root1 is rule1 under a trusted root: images on line 4.
var root1 = append([]string{"trustedRoot: roots/trusted_root.json"}, rule1...)

// sigs1 opens rule1's signature authorities: the first one is on line 6.
var sigs1 = append(append([]string(nil), rule1...), "    signatures:", "      authorities:")

// keyless1 is root1 with one keyless authority whose keys continue on line 10.
var keyless1 = append(append([]string(nil), root1...), "    signatures:", "      authorities:", "        - keyless:", "            issuer: i", "            subject: s")

// att1 is rule1 with one attestation on line 5; its keys continue on line 7.
var att1 = append(append([]string(nil), rule1...), "    attestations:", "      - predicateType: https://slsa.dev/provenance/v1", "        authorities: [{key: keys/ed25519.pub}]")

func with(base []string, more ...string) []byte {
	return y(append(append([]string(nil), base...), more...)...)
}

// TestCTLogSkip: ctlog: skip is what lets a keyless authority stand on a
// root without CT logs, and says so in the parsed authority.
func TestCTLogSkip(t *testing.T) {
	lines := append([]string{"trustedRoot: roots/no_ctlogs.json"}, keyless1[1:]...)
	p, err := Parse(filepath.Join("testdata", "policy.yaml"), y(append(lines, "          ctlog: skip")...))
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Rules[0].Signatures.Authorities[0]; !a.SkipSCT {
		t.Errorf("authority %+v: SkipSCT not set", a)
	}
	p, err = Parse(filepath.Join("testdata", "policy.yaml"), y(keyless1...))
	if err != nil || p.Rules[0].Signatures.Authorities[0].SkipSCT {
		t.Errorf("default: %v, SkipSCT must be false", err)
	}
}

func TestParseErrors(t *testing.T) {
	big := make([]byte, maxPolicySize+1)
	for i := range big {
		big[i] = '#'
	}
	for _, tc := range []struct {
		name string
		data []byte
		line int
		key  string
		msg  string
	}{
		// Unknown and duplicate keys.
		{"unknown top-level key", y("mode: enforce", "modes: warn"), 2, "modes", "unknown key; allowed here: mode, default, offline, trustedRoot, rules"},
		{"wrong case key", y("Mode: warn"), 1, "Mode", `did you mean "mode"?`},
		{"unknown rule key", with(rule1, "    image: [x]"), 4, "rules[0].image", "unknown key"},
		{"unknown keyless key", with(append([]string{"trustedRoot: roots/trusted_root.json"}, rule1...), "    signatures:", "      authorities:", "        - keyless:", "            issuer: i", "            subject: s", "            workflow: w"), 10, "rules[0].signatures.authorities[0].keyless.workflow", "unknown key"},
		{"duplicate top-level key", y("mode: enforce", "mode: warn"), 2, "mode", "duplicate key (first at line 1)"},
		{"duplicate rule key", with(rule1, "    images: [x.io/b]"), 4, "rules[0].images", "duplicate key (first at line 3)"},
		{"duplicate nested key", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - keyless:", "            issuer: i", "            issuer: j", "            subject: s"), 9, "rules[0].signatures.authorities[0].keyless.issuer", "duplicate key (first at line 8)"},
		{"non-string key", y("1: x"), 1, "", "keys must be plain strings"},

		// Wrong kinds.
		{"top level list", y("- a"), 1, "", "must be a mapping (key: value lines), not a list"},
		{"rules is mapping", y("rules:", "  name: a"), 2, "rules", "must be a list, not a mapping"},
		{"rules null", y("rules:"), 1, "rules", "write rules: []"},
		{"rule is list", y("rules:", "  - [a]"), 2, "rules[0]", "must be a mapping"},
		{"offline is string", y("offline: 168h"), 1, "offline", "must be a mapping"},
		{"images is string", with([]string{"rules:", "  - name: a"}, "    images: x.io/a", "    action: allow"), 3, "rules[0].images", "must be a list, not the string \"x.io/a\""},
		{"name is number", y("rules:", "  - name: 123", "    images: [x.io/a]"), 2, "rules[0].name", `must be a string, not the number 123; quote it if you mean the text: "123"`},
		{"name is null", y("rules:", "  - name:", "    images: [x.io/a]"), 2, "rules[0].name", "must be a string, not empty (null)"},
		{"image is bool", y("rules:", "  - name: a", "    images: [true]"), 3, "rules[0].images[0]", "must be a string, not the boolean true"},
		{"key is number", with(rule1, "    signatures:", "      authorities: [{key: 5}]"), 5, "rules[0].signatures.authorities[0].key", "must be a string"},
		{"threshold is string", with(rule1, "    signatures:", "      threshold: two", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.threshold", "must be a whole number"},
		{"acceptPlatformSignature is string", with(rule1, "    signatures:", "      acceptPlatformSignature: \"yes\"", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.acceptPlatformSignature", "must be true or false"},
		{"custom tag", y("mode: !foo enforce"), 1, "mode", "must be a string, not a !foo value"},

		// Enums, durations.
		{"bad mode", y("mode: enforcing"), 1, "mode", `"enforcing" is not one of enforce, warn, audit`},
		{"bad rule mode", with(rule1, "    mode: Warn", "    action: allow"), 4, "rules[0].mode", "is not one of"},
		{"default verify", y("default: verify"), 1, "default", "must be deny or allow"},
		{"bad default", y("default: reject"), 1, "default", `"reject" is not one of deny, allow`},
		{"bad action", with(rule1, "    action: permit"), 4, "rules[0].action", `"permit" is not one of verify, allow, deny`},
		{"keyless with a root without CT logs", y(append([]string{"trustedRoot: roots/no_ctlogs.json"}, keyless1[1:]...)...), 7, "rules[0].signatures.authorities[0].keyless", "write ctlog: skip on this authority"},
		{"ctlog on a key authority", with(rule1, "    signatures:", "      authorities:", "        - key: keys/ed25519.pub", "          ctlog: skip"), 7, "rules[0].signatures.authorities[0].ctlog", "keyless authorities only"},
		{"bad ctlog", with(keyless1, "          ctlog: maybe"), 10, "rules[0].signatures.authorities[0].ctlog", "is not one of required, skip"},
		{"bad signedIdentity", with(rule1, "    signatures:", "      signedIdentity: exact", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.signedIdentity", "is not one of matchRepository, matchExact, any"},
		{"remapIdentity without prefix", with(rule1, "    signatures:", "      signedIdentity: {type: remapIdentity, signedPrefix: docker.io/library}", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.signedIdentity.prefix", "remapIdentity needs prefix and signedPrefix"},
		{"remapIdentity prefix without host", with(rule1, "    signatures:", "      signedIdentity: {type: remapIdentity, prefix: library, signedPrefix: docker.io/library}", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.signedIdentity.prefix", "does not start with a registry host"},
		{"prefix with another type", with(rule1, "    signatures:", "      signedIdentity: {type: matchExact, prefix: a.io}", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.signedIdentity.prefix", "only with type remapIdentity"},
		{"unknown identity key", with(rule1, "    signatures:", "      signedIdentity: {type: matchExact, exact: true}", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.signedIdentity.exact", "unknown key"},
		{"bad duration", y("offline:", "  maxVerdictAge: 7d"), 2, "offline.maxVerdictAge", `"7d" is not a duration`},
		{"negative duration", y("offline:", "  maxVerdictAge: -1h"), 2, "offline.maxVerdictAge", "must not be negative"},
		{"numeric duration", y("offline:", "  maxVerdictAge: 3600"), 2, "offline.maxVerdictAge", "must be a duration such as 168h"},

		// Globs.
		{"triple star", y("rules:", "  - name: a", "    images: [\"x.io/***\"]", "    action: allow"), 3, "rules[0].images[0]", "*** in an image pattern"},
		{"empty glob", y("rules:", "  - name: a", "    images: [\"\"]", "    action: allow"), 3, "rules[0].images[0]", "must not be empty"},
		{"whitespace glob", y("rules:", "  - name: a", "    action: allow", "    images:", "      - x.io/a", "      - \"x.io/a b\""), 6, "rules[0].images[1]", `character ' ' cannot appear`},
		{"upper-case glob", y("rules:", "  - name: a", "    images: [x.io/A]", "    action: allow"), 3, "rules[0].images[0]", "upper-case 'A'"},
		{"glob never matches", y("rules:", "  - name: a", "    images: [\"ngin*\"]", "    action: allow"), 3, "rules[0].images[0]", "can never match"},
		{"empty tag glob", y("rules:", "  - name: a", "    images: [\"nginx:\"]", "    action: allow"), 3, "rules[0].images[0]", "empty tag"},
		{"missing images", y("rules:", "  - name: a", "    action: allow"), 2, "rules[0].images", "missing; list the image patterns"},
		{"empty images", y("rules:", "  - name: a", "    images: []", "    action: allow"), 3, "rules[0].images", "must list at least one image pattern"},
		{"bad namespace", with(rule1, "    namespaces: [Prod]", "    action: allow"), 4, "rules[0].namespaces[0]", "character 'P' cannot appear in a namespace pattern"},
		{"double star namespace", with(rule1, "    namespaces: [\"**\"]", "    action: allow"), 4, "rules[0].namespaces[0]", "write *"},
		{"empty namespaces", with(rule1, "    namespaces: []", "    action: allow"), 4, "rules[0].namespaces", "remove the key to match every namespace"},

		// Key files.
		{"missing key file", with(rule1, "    signatures:", "      authorities:", "        - key: keys/missing.pub"), 6, "rules[0].signatures.authorities[0].key", "key file " + abs(t, "keys/missing.pub") + " does not exist; relative paths resolve against the policy's directory"},
		{"key file is a directory", with(rule1, "    signatures:", "      authorities:", "        - key: keys"), 6, "rules[0].signatures.authorities[0].key", "is not a regular file"},
		{"garbage key", with(rule1, "    signatures:", "      authorities:", "        - key: keys/garbage.pub"), 6, "rules[0].signatures.authorities[0].key", "no PEM block"},
		{"weak rsa key", with(rule1, "    signatures:", "      authorities:", "        - key: keys/rsa1024.pub"), 6, "rules[0].signatures.authorities[0].key", "RSA key of 1024 bits is too weak"},
		{"p521 key", with(rule1, "    signatures:", "      authorities:", "        - key: keys/ecdsa-p521.pub"), 6, "rules[0].signatures.authorities[0].key", "ECDSA curve P-521 is not supported"},
		{"two keys in a file", with(rule1, "    signatures:", "      authorities:", "        - key: keys/two-keys.pub"), 6, "rules[0].signatures.authorities[0].key", "more than one PEM block"},
		{"key in attestation", with(rule1, "    attestations:", "      - predicateType: https://p.example/v1", "        authorities:", "          - key: keys/garbage.pub"), 7, "rules[0].attestations[0].authorities[0].key", "no PEM block"},

		// Trusted roots.
		{"missing trusted root", y("trustedRoot: roots/missing.json"), 1, "trustedRoot", "trusted root file " + abs(t, "roots/missing.json") + " does not exist"},
		{"missing trusted root in list", y("trustedRoot:", "  - roots/trusted_root.json", "  - roots/missing.json"), 3, "trustedRoot[1]", "does not exist"},
		{"trusted root not json", y("trustedRoot: roots/bad.json"), 1, "trustedRoot", "is not JSON"},
		{"trusted root twice", y("trustedRoot: [roots/trusted_root.json, ./roots/trusted_root.json]"), 1, "trustedRoot[1]", "is listed twice"},
		{"trusted root empty list", y("trustedRoot: []"), 1, "trustedRoot", "must list at least one"},
		{"PEM roots without fulcio, keyless", y(append([]string{"trustedRoot: {rekor: [keys/rekor.pub]}"}, keyless1[1:]...)...), 7, "rules[0].signatures.authorities[0].keyless", "needs a Sigstore trusted root with a Fulcio CA"},
		{"PEM roots naming nothing", y("trustedRoot: {ctlogs: [keys/rekor.pub]}"), 1, "trustedRoot", "names no fulcio, rekor or tsa file"},

		// The operator's own CA.
		{"certificate without roots", with(root1, "    signatures:", "      authorities:", "        - certificate: {subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.roots", "missing; name the CA's root"},
		{"certificate root is a leaf", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/leaf.pem, subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.roots", "is not a self-signed CA certificate"},
		{"certificate root is an intermediate", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: [ca/intermediate.pem], subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.roots", "is not a self-signed CA certificate"},
		{"certificate intermediate is a leaf", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, intermediates: ca/leaf.pem, subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.intermediates", "is not a CA certificate"},
		{"certificate root is a key", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: keys/rekor.pub, subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.roots", "holds a PUBLIC KEY block"},
		{"certificate root missing", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: [ca/missing.pem], subject: s}"), 7, "rules[0].signatures.authorities[0].certificate.roots[0]", "does not exist"},
		{"certificate without subject", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem}"), 7, "rules[0].signatures.authorities[0].certificate.subject", "missing; set subject or subjectRegExp"},
		{"certificate bad signingTime", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s, signingTime: now}"), 7, "rules[0].signatures.authorities[0].certificate.signingTime", "is not one of timestamp, verificationTime"},
		{"certificate timestamp without roots", with(rule1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s}"), 6, "rules[0].signatures.authorities[0].certificate.signingTime", "write signingTime: verificationTime"},
		{"certificate log required without roots", with(rule1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s, signingTime: verificationTime}", "          transparencyLog: required"), 7, "rules[0].signatures.authorities[0].transparencyLog", "the policy has none"},
		{"certificate with ctlog", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s}", "          ctlog: skip"), 8, "rules[0].signatures.authorities[0].ctlog", "keyless authorities only"},
		{"certificate with rekorKey", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s}", "          rekorKey: keys/rekor.pub"), 8, "rules[0].signatures.authorities[0].rekorKey", "key authorities only"},
		{"certificate and key", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s}", "          key: keys/ed25519.pub"), 7, "rules[0].signatures.authorities[0]", "exactly one of key, keyless or certificate"},
		{"same certificate identity twice", with(root1, "    signatures:", "      authorities:", "        - certificate: {roots: ca/root.pem, subject: s}", "        - certificate: {roots: ./ca/root.pem, subject: s, signingTime: verificationTime}"), 8, "rules[0].signatures.authorities[1]", "is the same signer"},
		{"PEM root of the wrong kind", y("trustedRoot: {fulcio: [keys/rekor.pub]}"), 1, "trustedRoot.fulcio[0]", "is not a PEM Fulcio CA chain file"},
		{"PEM root with a bad time", y("trustedRoot: {fulcio: [{file: keys/rekor.pub, validFrom: yesterday}]}"), 1, "trustedRoot.fulcio[0].validFrom", "is not an RFC 3339 time"},
		{"trusted root mapping with an unknown key", y("trustedRoot: {path: x}"), 1, "trustedRoot.path", "unknown key; allowed here: fulcio, rekor, ctlogs, tsa"},
		{"keyless without trusted root", with(rule1, "    signatures:", "      authorities:", "        - keyless: {issuer: i, subject: s}"), 6, "rules[0].signatures.authorities[0].keyless", "add trustedRoot"},

		// Rules and contradictions.
		{"duplicate rule names", y("rules:", "  - name: a", "    images: [x.io/a]", "    action: allow", "  - name: a", "    images: [x.io/b]", "    action: deny"), 5, "rules[1].name", `rule name "a" is already used by the rule at line 2`},
		{"missing name", y("rules:", "  - images: [x.io/a]", "    action: allow"), 2, "rules[0].name", "missing; every rule needs a unique name"},
		{"reserved name", y("rules:", "  - name: default", "    images: [x.io/a]", "    action: allow"), 2, "rules[0].name", "reserved"},
		{"bad name", y("rules:", "  - name: my rule", "    images: [x.io/a]", "    action: allow"), 2, "rules[0].name", "not a valid rule name"},
		{"allow with signatures", with(rule1, "    action: allow", "    signatures:", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures", "action allow never checks signatures; remove signatures, or set action: verify"},
		{"deny with attestations", with(rule1, "    attestations:", "      - predicateType: p", "        authorities: [{key: keys/ed25519.pub}]", "    action: deny"), 4, "rules[0].attestations", "action deny never checks attestations"},
		{"verify without requirements", y("rules:", "  - name: a", "    images: [x.io/a]"), 2, "rules[0]", `rule "a" verifies but requires nothing`},
		{"explicit verify without requirements", with(rule1, "    namespaces: [\"*\"]", "    action: verify"), 5, "rules[0]", "verifies but requires nothing"},
		{"threshold too high", with(rule1, "    signatures:", "      threshold: 3", "      authorities:", "        - key: keys/ecdsa-p256.pub", "        - key: keys/ed25519.pub"), 5, "rules[0].signatures.threshold", "threshold 3 exceeds the 2 authorities; lower it or add authorities"},
		{"threshold zero", with(rule1, "    signatures:", "      threshold: 0", "      authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].signatures.threshold", "must be at least 1"},
		{"missing authorities", with(rule1, "    signatures:", "      threshold: 1"), 5, "rules[0].signatures.authorities", "missing; list who may sign"},
		{"empty authorities", with(rule1, "    signatures:", "      authorities: []"), 5, "rules[0].signatures.authorities", "must list at least one authority"},
		{"signatures is null", with(rule1, "    signatures:"), 4, "rules[0].signatures", "must be a mapping"},
		{"duplicate authority", with(rule1, "    signatures:", "      authorities:", "        - key: keys/ecdsa-p256.pub", "        - key: keys/ecdsa-p256-copy.pub"), 7, "rules[0].signatures.authorities[1]", "is the same signer as rules[0].signatures.authorities[0]"},
		{"key and keyless", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - key: keys/ed25519.pub", "          keyless: {issuer: i, subject: s}"), 7, "rules[0].signatures.authorities[0]", "exactly one of key, keyless or certificate"},
		{"empty authority", with(rule1, "    signatures:", "      authorities: [{}]"), 5, "rules[0].signatures.authorities[0]", "needs key:"},
		{"issuer and issuerRegExp", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - keyless:", "            issuer: https://a", "            issuerRegExp: ^https://a$", "            subject: s"), 9, "rules[0].signatures.authorities[0].keyless.issuerRegExp", "set exactly one of issuer and issuerRegExp"},
		{"neither issuer", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - keyless:", "            subject: s"), 8, "rules[0].signatures.authorities[0].keyless.issuer", "missing; set issuer or issuerRegExp"},
		{"subject and subjectRegExp", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - keyless:", "            issuer: i", "            subject: s", "            subjectRegExp: s"), 10, "rules[0].signatures.authorities[0].keyless.subjectRegExp", "set exactly one of subject and subjectRegExp"},
		{"bad regexp", y("trustedRoot: roots/trusted_root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities:", "        - keyless:", "            issuer: i", "            subjectRegExp: '^(x'"), 9, "rules[0].signatures.authorities[0].keyless.subjectRegExp", "not a valid regular expression"},
		{"attestation without predicateType", with(rule1, "    attestations:", "      - authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "missing"},
		{"attestation empty predicateType", with(rule1, "    attestations:", "      - predicateType: \"\"", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "must not be empty"},
		{"attestation empty authorities", with(rule1, "    attestations:", "      - predicateType: https://p.example/v1", "        authorities: []"), 6, "rules[0].attestations[0].authorities", "must list at least one authority"},
		{"attestations empty", with(rule1, "    attestations: []"), 4, "rules[0].attestations", "must list at least one attestation"},

		// Authority options (issue 3): rekorKey, transparencyLog.
		{"rekorKey on keyless", with(root1, "    signatures:", "      authorities:", "        - keyless: {issuer: i, subject: s}", "          rekorKey: keys/rekor.pub"), 8, "rules[0].signatures.authorities[0].rekorKey", "applies to key authorities only"},
		{"rekorKey alone", with(sigs1, "        - rekorKey: keys/rekor.pub"), 6, "rules[0].signatures.authorities[0]", "needs key:"},
		{"rekorKey missing", with(sigs1, "        - key: keys/ed25519.pub", "          rekorKey: keys/missing.pub"), 7, "rules[0].signatures.authorities[0].rekorKey", "Rekor key file " + abs(t, "keys/missing.pub") + " does not exist"},
		{"rekorKey garbage", with(sigs1, "        - key: keys/ed25519.pub", "          rekorKey: keys/garbage.pub"), 7, "rules[0].signatures.authorities[0].rekorKey", "Rekor key file " + abs(t, "keys/garbage.pub") + ": no PEM block"},
		{"rekorKey weak", with(sigs1, "        - key: keys/ed25519.pub", "          rekorKey: keys/rsa1024.pub"), 7, "rules[0].signatures.authorities[0].rekorKey", "too weak"},
		{"rekorKey is a number", with(sigs1, "        - key: keys/ed25519.pub", "          rekorKey: 7"), 7, "rules[0].signatures.authorities[0].rekorKey", "must be a string"},
		{"rekorKey is the signing key", with(sigs1, "        - key: keys/ecdsa-p256.pub", "          rekorKey: keys/ecdsa-p256-copy.pub"), 7, "rules[0].signatures.authorities[0].rekorKey", "is the same public key as key"},
		{"rekorKey unknown spelling", with(sigs1, "        - key: keys/ed25519.pub", "          rekorkey: keys/rekor.pub"), 7, "rules[0].signatures.authorities[0].rekorkey", `did you mean "rekorKey"?`},
		{"unknown authority key", with(sigs1, "        - key: keys/ed25519.pub", "          tlog: required"), 7, "rules[0].signatures.authorities[0].tlog", "allowed here: key, keyless, certificate, rekorKey, transparencyLog"},
		{"transparencyLog bad value", with(sigs1, "        - key: keys/ed25519.pub", "          transparencyLog: always"), 7, "rules[0].signatures.authorities[0].transparencyLog", `"always" is not one of required, optional`},
		{"transparencyLog bool", with(sigs1, "        - key: keys/ed25519.pub", "          transparencyLog: true"), 7, "rules[0].signatures.authorities[0].transparencyLog", "must be a string, not the boolean true"},
		{"transparencyLog required without log key", with(sigs1, "        - key: keys/ed25519.pub", "          transparencyLog: required"), 7, "rules[0].signatures.authorities[0].transparencyLog", "add rekorKey: keys/rekor.pub to this authority, or trustedRoot"},
		{"transparencyLog required without log key in attestation", with(rule1, "    attestations:", "      - predicateType: https://slsa.dev/provenance/v1", "        authorities:", "          - {key: keys/ed25519.pub, transparencyLog: required}"), 7, "rules[0].attestations[0].authorities[0].transparencyLog", "the policy has none"},
		{"same key with and without rekorKey", with(sigs1, "        - key: keys/ed25519.pub", "        - key: keys/ed25519.pub", "          rekorKey: keys/rekor.pub"), 7, "rules[0].signatures.authorities[1]", "is the same signer as rules[0].signatures.authorities[0]"},

		// Keyless certificate extensions.
		{"sourceRepositoryURI and RegExp", with(keyless1, "            sourceRepositoryURI: https://github.com/a/b", "            sourceRepositoryURIRegExp: ^https://github.com/a/"), 11, "rules[0].signatures.authorities[0].keyless.sourceRepositoryURIRegExp", "set only one of sourceRepositoryURI and sourceRepositoryURIRegExp"},
		{"sourceRepositoryRef bad regexp", with(keyless1, "            sourceRepositoryRefRegExp: '^refs/(tags'"), 10, "rules[0].signatures.authorities[0].keyless.sourceRepositoryRefRegExp", "not a valid regular expression (Go RE2 syntax)"},
		{"sourceRepositoryRef empty", with(keyless1, "            sourceRepositoryRef: ''"), 10, "rules[0].signatures.authorities[0].keyless.sourceRepositoryRef", "must not be empty"},
		{"buildSignerURI is a list", with(keyless1, "            buildSignerURI: [a, b]"), 10, "rules[0].signatures.authorities[0].keyless.buildSignerURI", "must be a string, not a list"},
		{"buildSignerURIRegExp is null", with(keyless1, "            buildSignerURIRegExp:"), 10, "rules[0].signatures.authorities[0].keyless.buildSignerURIRegExp", "must be a string, not empty (null)"},
		{"extension wrong case", with(keyless1, "            sourceRepositoryUri: https://github.com/a/b"), 10, "rules[0].signatures.authorities[0].keyless.sourceRepositoryUri", `did you mean "sourceRepositoryURI"?`},
		{"duplicate keyless", with(keyless1, "            sourceRepositoryURI: https://github.com/a/b", "        - keyless: {issuer: i, subject: s, sourceRepositoryURI: https://github.com/a/b}", "          transparencyLog: optional"), 11, "rules[0].signatures.authorities[1]", "is the same signer as rules[0].signatures.authorities[0]"},
		{"keyless attestation without trusted root", with(rule1, "    attestations:", "      - predicateType: https://slsa.dev/provenance/v1", "        authorities:", "          - keyless: {issuer: i, subject: s}"), 7, "rules[0].attestations[0].authorities[0].keyless", "add trustedRoot"},

		// Attestation predicate types and conditions.
		{"predicateType cosign short name", with(rule1, "    attestations:", "      - predicateType: slsaprovenance1", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", `"slsaprovenance1" is a cosign --type short name; statements carry the URI it stands for, write predicateType: https://slsa.dev/provenance/v1`},
		{"predicateType word", with(rule1, "    attestations:", "      - predicateType: provenance", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", `"provenance" is not a URI`},
		{"predicateType no host", with(rule1, "    attestations:", "      - predicateType: 'https://'", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "is not a URI"},
		{"predicateType bad scheme", with(rule1, "    attestations:", "      - predicateType: '1https://slsa.dev/provenance/v1'", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "is not a URI"},
		{"predicateType path only", with(rule1, "    attestations:", "      - predicateType: /provenance/v1", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "is not a URI"},
		{"predicateType space", with(rule1, "    attestations:", "      - predicateType: https://slsa.dev/provenance v1", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "contains whitespace"},
		{"predicateType number", with(rule1, "    attestations:", "      - predicateType: 1", "        authorities: [{key: keys/ed25519.pub}]"), 5, "rules[0].attestations[0].predicateType", "must be a string"},
		{"unknown attestation key", with(att1, "        condition: [x]"), 7, "rules[0].attestations[0].condition", "allowed here: predicateType, authorities, conditions"},
		{"conditions empty", with(att1, "        conditions: []"), 7, "rules[0].attestations[0].conditions", "an empty list sets no condition"},
		{"conditions is a string", with(att1, "        conditions: predicate.x == 1"), 7, "rules[0].attestations[0].conditions", "must be a list of CEL expressions"},
		{"condition is a number", with(att1, "        conditions: [1]"), 7, "rules[0].attestations[0].conditions[0]", "must be a string, not the number 1"},
		{"condition is empty", with(att1, "        conditions: ['']"), 7, "rules[0].attestations[0].conditions[0]", "must not be empty"},
		{"condition syntax error", with(att1, "        conditions:", "          - predicateType == \"x\"", "          - predicate.x =="), 9, "rules[0].attestations[0].conditions[1]", "not a valid CEL expression: 1:15: Syntax error"},
		{"condition undeclared variable", with(att1, "        conditions:", "          - statement.predicate.x == 1"), 8, "rules[0].attestations[0].conditions[0]", "undeclared reference to 'statement'"},
		{"condition not bool", with(att1, "        conditions:", "          - size(subject) + 1"), 8, "rules[0].attestations[0].conditions[0]", "evaluates to int, not bool"},
		{"condition string", with(att1, "        conditions:", "          - predicateType"), 8, "rules[0].attestations[0].conditions[0]", "evaluates to string, not bool"},
		{"condition bad overload", with(att1, "        conditions:", "          - predicateType > 1"), 8, "rules[0].attestations[0].conditions[0]", "found no matching overload"},
		{"condition too long", with(att1, "        conditions:", "          - '"+strings.Repeat("true && ", 600)+"true'"), 8, "rules[0].attestations[0].conditions[0]", "more than 4096; split it"},
		{"condition garbage", with(att1, "        conditions:", "          - ')))(((+-*/'"), 8, "rules[0].attestations[0].conditions[0]", " more; the expression sees predicate"},

		// Documents, aliases, syntax.
		{"empty file", []byte(""), 1, "", "the policy is empty; a minimal policy"},
		{"comments only", y("# nothing", "# here"), 1, "", "the policy is empty"},
		{"two documents", y("mode: enforce", "---", "mode: warn"), 2, "", "a second YAML document starts here"},
		{"trailing separator", y("mode: enforce", "---"), 2, "", "a second YAML document"},
		{"anchor", y("rules:", "  - name: a", "    images: &imgs [x.io/a]", "    action: allow", "  - name: b", "    images: *imgs", "    action: deny"), 3, "rules[0].images", "anchors (&imgs) are not allowed: aliases to them would let one edit change many rules invisibly"},
		{"merge key", y("base: &b {action: allow}", "rules:", "  - <<: *b"), 1, "base", "anchors (&b) are not allowed"},
		{"syntax error", y("mode: enforce", "rules: [", "  x"), 2, "", "YAML syntax: did not find expected ',' or ']'"},
		{"syntax error in a flow", y("rules: [a", "mode: x: y"), 2, "", "YAML syntax"},
		{"syntax error on line 1", y("mode: a: b", "default: deny"), 1, "", "YAML syntax: mapping values are not allowed"},
		{"scanner error", y("mode: enforce", "default: \"deny"), 2, "", "YAML syntax: found unexpected end of stream"},
		{"bad indentation", y("mode: enforce", "offline:", "    maxVerdictAge: 1h", "  x: y"), 4, "", "YAML syntax"},
		{"tab indentation", y("rules:", "\t- name: a"), 2, "", "YAML syntax"},
		{"control character", y("mode: enforce", "default: d\x01eny"), 2, "", "YAML syntax: control characters"},
		{"too large", big, 0, "", "larger than 1048576 bytes"},
		{"null document", y("~"), 1, "", "must be a mapping (key: value lines), not empty (null)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(testPath, tc.data)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is %T, not *Error: %v", err, err)
			}
			if e.File != testPath || e.Line != tc.line || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %s\nwant %s:%d:_: %s: ...%s...", e, testPath, tc.line, tc.key, tc.msg)
			}
			prefix := testPath + ":"
			if tc.line > 0 {
				prefix += strconv.Itoa(tc.line) + ":"
			}
			if !strings.HasPrefix(e.Error(), prefix) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), prefix)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "policy.yaml", Line: 12, Column: 5, Key: "rules[1].signatures.threshold", Msg: "threshold 3 exceeds the 2 authorities; lower it or add authorities"},
			"policy.yaml:12:5: rules[1].signatures.threshold: threshold 3 exceeds the 2 authorities; lower it or add authorities"},
		{Error{File: "p.yaml", Line: 3, Msg: "YAML syntax: x"}, "p.yaml:3: YAML syntax: x"},
		{Error{File: "p.yaml", Msg: "too large"}, "p.yaml: too large"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestThresholdMessage pins the exact wording the lead's brief quotes.
func TestThresholdMessage(t *testing.T) {
	_, err := Parse("policy.yaml", y(
		"rules:",
		"  - name: a",
		"    images: [x.io/a]",
		"    signatures:",
		"      authorities: [{key: testdata/keys/ed25519.pub}, {key: testdata/keys/rsa2048.pub}]",
		"      threshold: 3",
	))
	want := "policy.yaml:6:18: rules[0].signatures.threshold: threshold 3 exceeds the 2 authorities; lower it or add authorities"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}

func TestParsePrivateKey(t *testing.T) {
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cosign.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	_, err = Parse(filepath.Join(dir, "policy.yaml"), with(rule1, "    signatures:", "      authorities: [{key: cosign.key}]"))
	var e *Error
	if !errors.As(err, &e) || e.Line != 5 || !strings.Contains(e.Msg, "holds a private key") {
		t.Errorf("err = %v", err)
	}
}

func TestParseKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{"keys/ecdsa-p256.pub", true},
		{"keys/ecdsa-p384.pub", true},
		{"keys/ed25519.pub", true},
		{"keys/rsa2048.pub", true},
		{"keys/rsa1024.pub", false},
		{"keys/ecdsa-p521.pub", false},
		{"keys/garbage.pub", false},
		{"keys/two-keys.pub", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Parse(testPath, with(rule1, "    signatures:", "      authorities: [{key: "+tc.file+"}]"))
			if (err == nil) != tc.ok {
				t.Errorf("ok = %v, err = %v", err == nil, err)
			}
		})
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist and not ErrInvalid", err)
	}
	big := filepath.Join(dir, "big.yaml")
	write(t, big, []byte(strings.Repeat("# padding\n", maxPolicySize/10+1)))
	if _, err := Load(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized file: err = %v", err)
	}
	// Relative paths resolve against the policy's directory, not the
	// working directory.
	pub, _ := os.ReadFile("testdata/keys/ed25519.pub")
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "keys", "k.pub"), pub)
	policy := filepath.Join(dir, "policy.yaml")
	write(t, policy, with(rule1, "    signatures:", "      authorities: [{key: keys/k.pub}]"))
	p, err := Load(policy)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := p.Rules[0].Signatures.Authorities[0].Key.File; got != filepath.Join(dir, "keys", "k.pub") {
		t.Errorf("key file = %q", got)
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	pub, _ := os.ReadFile("testdata/keys/ed25519.pub")
	other, _ := os.ReadFile("testdata/keys/ecdsa-p256.pub")
	root, _ := os.ReadFile("testdata/roots/trusted_root.json")
	write(t, filepath.Join(dir, "k.pub"), pub)
	write(t, filepath.Join(dir, "root.json"), root)
	policyPath := filepath.Join(dir, "policy.yaml")
	data := y("trustedRoot: root.json", "rules:", "  - name: a", "    images: [x.io/a]", "    signatures:", "      authorities: [{key: k.pub}]")

	digestOf := func() string {
		t.Helper()
		p, err := Parse(policyPath, data)
		if err != nil {
			t.Fatal(err)
		}
		return p.Digest
	}
	d0 := digestOf()
	if d0 != digestOf() {
		t.Fatal("digest is not deterministic")
	}
	seen := map[string]string{d0: "original"}
	check := func(what string) {
		t.Helper()
		d := digestOf()
		if prev, dup := seen[d]; dup {
			t.Errorf("%s: digest %s equals that of %s", what, d, prev)
		}
		seen[d] = what
	}

	data = append(data, []byte("# comment\n")...)
	check("policy bytes changed")
	write(t, filepath.Join(dir, "k.pub"), other)
	check("key file changed")
	write(t, filepath.Join(dir, "root.json"), append(root, ' '))
	check("trusted root changed")
	// Same content under another name is another trust store.
	write(t, filepath.Join(dir, "k2.pub"), other)
	data = []byte(strings.Replace(string(data), "key: k.pub", "key: k2.pub", 1))
	check("key file renamed")

	// A rekorKey is part of the trust store like any key.
	rekor, _ := os.ReadFile("testdata/keys/rekor.pub")
	p384, _ := os.ReadFile("testdata/keys/ecdsa-p384.pub")
	write(t, filepath.Join(dir, "rekor.pub"), rekor)
	data = []byte(strings.Replace(string(data), "{key: k2.pub}", "{key: k2.pub, rekorKey: rekor.pub}", 1))
	check("rekorKey added")
	p, err := Parse(policyPath, data)
	if err != nil {
		t.Fatal(err)
	}
	if files := p.Files(); !contains(files, filepath.Join(dir, "rekor.pub")) {
		t.Errorf("Files() = %q lacks the rekorKey", files)
	}
	write(t, filepath.Join(dir, "rekor.pub"), p384)
	check("rekorKey changed")
	data = []byte(strings.Replace(string(data), "rekorKey: rekor.pub}", "rekorKey: rekor.pub, transparencyLog: optional}", 1))
	check("transparencyLog changed")
}

// TestParseAuthorities checks the effective transparencyLog, names and
// identities of authorities that parse.
func TestParseAuthorities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string // authority list entries, from line 8
		tlogs []TransparencyLog
		names []string
	}{
		{"key", []string{"- key: keys/ed25519.pub"}, []TransparencyLog{TlogOptional}, []string{"key keys/ed25519.pub"}},
		{"key with rekorKey", []string{"- {key: keys/ed25519.pub, rekorKey: keys/rekor.pub}"}, []TransparencyLog{TlogRequired}, []string{"key keys/ed25519.pub"}},
		{"key with rekorKey, optional", []string{"- {key: keys/ed25519.pub, rekorKey: keys/rekor.pub, transparencyLog: optional}"}, []TransparencyLog{TlogOptional}, nil},
		{"key required against trusted roots", []string{"- {key: keys/ed25519.pub, transparencyLog: required}"}, []TransparencyLog{TlogRequired}, nil},
		{"key explicit optional", []string{"- {key: keys/ed25519.pub, transparencyLog: optional}"}, []TransparencyLog{TlogOptional}, nil},
		{"keyless", []string{"- keyless: {issuer: https://i, subject: s}"}, []TransparencyLog{TlogRequired}, []string{"keyless https://i s"}},
		{"keyless optional (TSA)", []string{"- keyless: {issuer: https://i, subject: s}", "  transparencyLog: optional"}, []TransparencyLog{TlogOptional}, nil},
		{"keyless extensions", []string{"- keyless: {issuerRegExp: ^https://i$, subject: s, buildSignerURIRegExp: ^https://b/, sourceRepositoryURI: https://r}"},
			[]TransparencyLog{TlogRequired}, []string{"keyless ^https://i$ s repo=https://r signer=^https://b/"}},
		// Not the same signer: an exact value is not the regular expression
		// with the same text, and different extensions are different identities.
		{"exact and regexp of the same text", []string{"- keyless: {issuer: ^i$, subject: s}", "- keyless: {issuerRegExp: ^i$, subject: s}"}, []TransparencyLog{TlogRequired, TlogRequired}, nil},
		{"different extensions", []string{"- keyless: {issuer: i, subject: s, sourceRepositoryRef: refs/heads/main}", "- keyless: {issuer: i, subject: s, sourceRepositoryRef: refs/heads/dev}"},
			nil, []string{"keyless i s ref=refs/heads/main", "keyless i s ref=refs/heads/dev"}},
		{"certificate", []string{"- certificate: {roots: ca/root.pem, intermediates: [ca/intermediate.pem], subject: release@example.com}"}, []TransparencyLog{TlogOptional}, []string{"certificate ca/root.pem release@example.com"}},
		{"certificate with issuer, log required", []string{"- certificate: {roots: [ca/root.pem], subjectRegExp: '@example\\.com$', issuer: https://i}", "  transparencyLog: required"},
			[]TransparencyLog{TlogRequired}, []string{`certificate ca/root.pem @example\.com$ issuer=https://i`}},
		{"certificate, two identities", []string{"- certificate: {roots: ca/root.pem, subject: a@example.com}", "- certificate: {roots: ca/root.pem, subject: b@example.com}"}, nil, nil},
		{"one rekorKey for two keys", []string{"- {key: keys/ed25519.pub, rekorKey: keys/rekor.pub}", "- {key: keys/ecdsa-p384.pub, rekorKey: keys/rekor.pub}"}, []TransparencyLog{TlogRequired, TlogRequired}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := append(append([]string(nil), root1...), "    signatures:", "      authorities:")
			for _, l := range tc.lines {
				lines = append(lines, "        "+l)
			}
			p, err := Parse(testPath, y(lines...))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			auths := p.Rules[0].Signatures.Authorities
			for i, want := range tc.tlogs {
				if got := auths[i].TransparencyLog; got != want {
					t.Errorf("authority %d: TransparencyLog = %q, want %q", i, got, want)
				}
			}
			for i, want := range tc.names {
				if got := auths[i].Name; got != want {
					t.Errorf("authority %d: Name = %q, want %q", i, got, want)
				}
			}
		})
	}
}

// TestAttestationOnly keeps a rule with attestations and no signatures
// valid, conditions included.
func TestAttestationOnly(t *testing.T) {
	p, err := Parse(testPath, with(att1, "        conditions:", "          - 'predicateType == \"https://slsa.dev/provenance/v1\"'", "          - predicate.builder.id.startsWith(\"https://github.com/\")"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r := p.Rules[0]
	if r.Action != ActionVerify || r.Signatures != nil || len(r.Attestations) != 1 {
		t.Fatalf("rule = %+v", r)
	}
	a := r.Attestations[0]
	if a.Line != 5 || a.PredicateType != "https://slsa.dev/provenance/v1" || len(a.Conditions) != 2 || a.Conditions[0].Line != 8 || a.Conditions[1].Line != 9 {
		t.Fatalf("attestation = %+v", a)
	}
}

func TestDigestFraming(t *testing.T) {
	type input struct {
		policy string
		files  map[string][]byte
	}
	// Naive concatenation would make each pair collide.
	for i, pair := range [][2]input{
		{{"ab", map[string][]byte{"/c": []byte("d")}}, {"a", map[string][]byte{"b/c": []byte("d")}}},
		{{"p", map[string][]byte{"/a": []byte("xy"), "/b": nil}}, {"p", map[string][]byte{"/a": []byte("x"), "/b": []byte("y")}}},
		{{"p", map[string][]byte{"/a": nil}}, {"p", nil}},
		{{"p/a", nil}, {"p", map[string][]byte{"/a": nil}}},
	} {
		da, _ := digest([]byte(pair[0].policy), pair[0].files)
		db, _ := digest([]byte(pair[1].policy), pair[1].files)
		if da == db {
			t.Errorf("pair %d collides: %s", i, da)
		}
	}
}

// TestErrorsAreLocated parses every prefix of a valid policy: each failure
// must be an *Error with a line, so an operator can always find the problem.
func TestErrorsAreLocated(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(data); i++ {
		_, err := Parse("testdata/full.yaml", data[:i])
		if err == nil {
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("prefix %d: error %T is not *Error: %v", i, err, err)
		}
		if e.Line == 0 {
			t.Errorf("prefix %d: error has no line: %v", i, err)
		}
	}
}
