package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/policy"
)

// TestAdhocPolicy: cosign's flags written as a policy parse as the
// engine's, with cosign's defaults and escape hatches.
func TestAdhocPolicy(t *testing.T) {
	root := filepath.Join("..", "..", "plugin", "policy", "testdata", "roots", "trusted_root.json")
	noCT := filepath.Join("..", "..", "plugin", "policy", "testdata", "roots", "no_ctlogs.json")
	tests := []struct {
		name  string
		f     adhocFlags
		want  string // "" parses; else part of the error
		check func(*testing.T, *policy.Policy)
	}{
		{name: "keyless", f: adhocFlags{identity: "me@example.com", issuer: "https://accounts.google.com", trustedRoot: root},
			check: func(t *testing.T, p *policy.Policy) {
				a := p.Rules[0].Signatures.Authorities[0]
				if a.Keyless == nil || a.SkipSCT || a.TransparencyLog != policy.TlogRequired {
					t.Errorf("authority %+v", a)
				}
			}},
		{name: "keyless, root without CT logs", f: adhocFlags{identity: "me@example.com", issuer: "https://accounts.google.com", trustedRoot: noCT}, want: "ctlog: skip"},
		{name: "keyless, --insecure-ignore-sct", f: adhocFlags{identity: "me@example.com", issuer: "https://accounts.google.com", trustedRoot: noCT, ignoreSCT: true},
			check: func(t *testing.T, p *policy.Policy) {
				if !p.Rules[0].Signatures.Authorities[0].SkipSCT {
					t.Error("SkipSCT not set")
				}
			}},
		{name: "attestation by short name", f: adhocFlags{identityRE: ".*", issuerRE: ".*", trustedRoot: root, predicateType: "slsaprovenance1"},
			check: func(t *testing.T, p *policy.Policy) {
				if len(p.Rules[0].Attestations) != 1 || p.Rules[0].Attestations[0].PredicateType != "https://slsa.dev/provenance/v1" {
					t.Errorf("attestations %+v", p.Rules[0].Attestations)
				}
			}},
		{name: "own CA, as cosign --ca-roots", f: adhocFlags{caRoots: caFile("root.pem"), caIntermediates: caFile("intermediate.pem"), identity: "release@example.com", ignoreTlog: true},
			check: func(t *testing.T, p *policy.Policy) {
				a := p.Rules[0].Signatures.Authorities[0]
				if c := a.Certificate; c == nil || len(c.Roots) != 1 || len(c.Intermediates) != 1 || c.Subject.Exact != "release@example.com" ||
					c.SigningTime != policy.SigningTimeVerification || a.TransparencyLog != policy.TlogOptional {
					t.Errorf("authority %+v (certificate %+v)", a, a.Certificate)
				}
			}},
		{name: "own CA needs the log or the flag", f: adhocFlags{caRoots: caFile("root.pem"), identity: "release@example.com"}, want: "--insecure-ignore-tlog"},
		{name: "own CA needs an identity", f: adhocFlags{caRoots: caFile("root.pem"), ignoreTlog: true}, want: "--ca-roots needs --certificate-identity"},
		{name: "intermediates alone", f: adhocFlags{caIntermediates: caFile("intermediate.pem"), identity: "x", ignoreTlog: true}, want: "--ca-intermediates needs --ca-roots"},
		{name: "key with an SCT flag", f: adhocFlags{key: "k.pub", ignoreTlog: true, ignoreSCT: true}, want: "keyless checks only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, err := tt.f.policy()
			if err == nil {
				var p *policy.Policy
				p, err = policy.Parse("(command-line flags)", text)
				if err == nil && tt.check != nil {
					tt.check(t, p)
				}
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("%v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func caFile(name string) string {
	return filepath.Join("..", "..", "plugin", "policy", "testdata", "ca", name)
}
