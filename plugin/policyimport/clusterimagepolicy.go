package policyimport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// clusterImagePolicy is policy-controller's ClusterImagePolicy
// (policy.sigstore.dev v1alpha1 and v1beta1), read strictly.
type clusterImagePolicy struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
		Labels      map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Mode   string `yaml:"mode"`
		Images []struct {
			Glob string `yaml:"glob"`
		} `yaml:"images"`
		Authorities []cipAuthority `yaml:"authorities"`
		Policy      *cipPolicy     `yaml:"policy"`
		Match       []yaml.Node    `yaml:"match"`
	} `yaml:"spec"`
}

type cipAuthority struct {
	Name string `yaml:"name"`
	Key  *struct {
		Data          string    `yaml:"data"`
		SecretRef     yaml.Node `yaml:"secretRef"`
		KMS           string    `yaml:"kms"`
		HashAlgorithm string    `yaml:"hashAlgorithm"`
	} `yaml:"key"`
	Keyless *struct {
		URL        string `yaml:"url"`
		Identities []struct {
			Issuer        string `yaml:"issuer"`
			Subject       string `yaml:"subject"`
			IssuerRegExp  string `yaml:"issuerRegExp"`
			SubjectRegExp string `yaml:"subjectRegExp"`
		} `yaml:"identities"`
		CACert            yaml.Node `yaml:"ca-cert"`
		TrustRootRef      string    `yaml:"trustRootRef"`
		InsecureIgnoreSCT bool      `yaml:"insecureIgnoreSCT"`
	} `yaml:"keyless"`
	Static *struct {
		Action  string `yaml:"action"`
		Message string `yaml:"message"`
	} `yaml:"static"`
	CTLog *struct {
		URL          string `yaml:"url"`
		TrustRootRef string `yaml:"trustRootRef"`
	} `yaml:"ctlog"`
	Source       []yaml.Node `yaml:"source"`
	RFC3161      yaml.Node   `yaml:"rfc3161timestamp"`
	Attestations []struct {
		Name          string     `yaml:"name"`
		PredicateType string     `yaml:"predicateType"`
		Policy        *cipPolicy `yaml:"policy"`
	} `yaml:"attestations"`
}

type cipPolicy struct {
	Type              string    `yaml:"type"`
	Data              string    `yaml:"data"`
	URL               string    `yaml:"url"`
	Sha256sum         string    `yaml:"sha256sum"`
	ConfigMapRef      yaml.Node `yaml:"configMapRef"`
	FetchConfigFile   bool      `yaml:"fetchConfigFile"`
	IncludeSpec       bool      `yaml:"includeSpec"`
	IncludeObjectMeta bool      `yaml:"includeObjectMeta"`
	IncludeTypeMeta   bool      `yaml:"includeTypeMeta"`
}

// cosign's and policy-controller's short predicate type names.
var shortPredicateTypes = map[string]string{
	"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"link":             "https://in-toto.io/Link/v1",
	"spdx":             "https://spdx.dev/Document",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
}

// FromClusterImagePolicy converts one or more ClusterImagePolicy documents
// (YAML, separated by ---). Each becomes a rule; authorities are
// alternatives, as in policy-controller. Inline keys are returned in
// Result.Files (keys/NAME.pub) for the caller to write into the trust
// store.
func FromClusterImagePolicy(data []byte) (*Result, error) {
	if len(data) > maxContainersPolicy {
		return nil, fmt.Errorf("ClusterImagePolicy: larger than %d bytes", maxContainersPolicy)
	}
	r := &Result{Files: map[string][]byte{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var rules strings.Builder
	needRoot := false
	n := 0
	for {
		var cip clusterImagePolicy
		err := dec.Decode(&cip)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ClusterImagePolicy: %w", err)
		}
		if cip.Kind != "ClusterImagePolicy" || (cip.APIVersion != "policy.sigstore.dev/v1alpha1" && cip.APIVersion != "policy.sigstore.dev/v1beta1") {
			return nil, fmt.Errorf("ClusterImagePolicy: document %d is %s %s, want policy.sigstore.dev/v1alpha1 or v1beta1 ClusterImagePolicy", n+1, cip.APIVersion, cip.Kind)
		}
		n++
		nr, err := convertCIP(&rules, r, &cip)
		if err != nil {
			return nil, err
		}
		needRoot = needRoot || nr
	}
	if n == 0 {
		return nil, errors.New("ClusterImagePolicy: no document")
	}
	if n > 1 {
		r.note(true, "policy-controller requires an image matched by several ClusterImagePolicies to satisfy every one of them; sealgate's rules are first match wins: make the globs disjoint, or merge the policies")
	}
	var out strings.Builder
	out.WriteString("# Imported from ClusterImagePolicy by sealgate policy import.\n")
	for _, note := range r.Notes {
		out.WriteString("# NOTE: " + note + "\n")
	}
	out.WriteString("mode: enforce\n# Images no ClusterImagePolicy matches: policy-controller lets them through\n# unless its no-match policy says deny.\ndefault: allow\n")
	if needRoot {
		out.WriteString("# Keyless authorities need Sigstore's roots: put trusted_root.json (cosign trusted-root create,\n# or Sigstore's TUF repository) in the trust store's roots/.\ntrustedRoot: roots/trusted_root.json\n")
	}
	out.WriteString("rules:\n" + rules.String())
	r.YAML = []byte(out.String())
	if r.Incomplete {
		return r, ErrIncomplete
	}
	return r, nil
}

// convertCIP writes the rule of one policy; it reports whether the rule
// needs a Sigstore trusted root.
func convertCIP(b *strings.Builder, r *Result, cip *clusterImagePolicy) (bool, error) {
	name := cip.Metadata.Name
	if name == "" {
		return false, errors.New("ClusterImagePolicy: metadata.name is empty")
	}
	at := "ClusterImagePolicy " + name
	if cip.Spec.Policy != nil {
		r.note(true, "%s: spec.policy (%s) is not evaluated by sealgate; the rule is written without it", at, cip.Spec.Policy.Type)
	}
	if len(cip.Spec.Match) > 0 {
		r.note(true, "%s: spec.match (resource kinds) has no node-level meaning; the rule applies to every pod", at)
	}
	if len(cip.Spec.Images) == 0 {
		return false, fmt.Errorf("%s: spec.images is empty", at)
	}
	var globs []string
	for _, im := range cip.Spec.Images {
		g := im.Glob
		if rest, ok := strings.CutPrefix(g, "index.docker.io/"); ok {
			g = "docker.io/" + rest
		}
		globs = append(globs, strconv.Quote(g))
	}
	fmt.Fprintf(b, "  # ClusterImagePolicy %s\n  - name: %s\n    images: [%s]\n", name, ruleName(name), strings.Join(globs, ", "))
	if cip.Spec.Mode == "warn" {
		b.WriteString("    mode: warn\n")
	}
	var sigAuths, attReqs []string
	needRoot, pass, fail := false, false, false
	for i, a := range cip.Spec.Authorities {
		aat := fmt.Sprintf("%s: authorities[%d]", at, i)
		if a.Static != nil {
			switch a.Static.Action {
			case "pass":
				pass = true
			case "fail":
				fail = true
			default:
				return false, fmt.Errorf("%s: static action %q", aat, a.Static.Action)
			}
			continue
		}
		if len(a.Source) > 0 {
			r.note(true, "%s: source (signatures in another repository) is not imported; this authority is left out", aat)
			continue
		}
		var auths []string
		switch {
		case a.Key != nil:
			if a.Key.Data == "" {
				r.note(true, "%s: a key from a secret or KMS is not imported; this authority is left out", aat)
				continue
			}
			file := fmt.Sprintf("keys/%s-%d.pub", ruleName(name), i)
			r.Files[file] = []byte(strings.TrimSpace(a.Key.Data) + "\n")
			tl := "optional"
			if a.CTLog != nil {
				tl = "required"
				needRoot = true
			}
			auths = append(auths, fmt.Sprintf("        - key: %s\n          transparencyLog: %s\n", file, tl))
		case a.Keyless != nil:
			needRoot = true
			if a.Keyless.TrustRootRef != "" || !a.Keyless.CACert.IsZero() {
				r.note(true, "%s: a custom Fulcio root (trustRootRef, ca-cert) must be in the trusted root the policy names", aat)
			}
			skipSCT := ""
			if a.Keyless.InsecureIgnoreSCT {
				skipSCT = "          ctlog: skip\n"
			}
			for _, id := range a.Keyless.Identities {
				var kb strings.Builder
				kb.WriteString("        - keyless:\n")
				for _, f := range [][2]string{{"issuer", id.Issuer}, {"issuerRegExp", id.IssuerRegExp}, {"subject", id.Subject}, {"subjectRegExp", id.SubjectRegExp}} {
					if f[1] != "" {
						fmt.Fprintf(&kb, "            %s: %s\n", f[0], strconv.Quote(f[1]))
					}
				}
				auths = append(auths, kb.String()+skipSCT)
			}
			if len(auths) == 0 {
				return false, fmt.Errorf("%s: keyless without identities", aat)
			}
		default:
			return false, fmt.Errorf("%s: no key, keyless or static", aat)
		}
		if len(a.Attestations) == 0 {
			sigAuths = append(sigAuths, auths...)
			continue
		}
		for _, att := range a.Attestations {
			pt := att.PredicateType
			if long, ok := shortPredicateTypes[pt]; ok {
				pt = long
			}
			if att.Policy != nil {
				r.note(true, "%s: attestation %s: its %s policy is not evaluated by sealgate; write its checks as CEL conditions", aat, att.Name, att.Policy.Type)
			}
			attReqs = append(attReqs, fmt.Sprintf("      - predicateType: %s\n        authorities:\n%s", strconv.Quote(pt), indentLines(strings.Join(auths, ""), 2)))
		}
	}
	if len(attReqs) > 0 && len(cip.Spec.Authorities) > 1 {
		r.note(true, "%s: policy-controller takes any one authority; sealgate requires every attestation written, each from its authority", at)
	}
	switch {
	case pass:
		b.WriteString("    action: allow\n")
		return false, nil
	case len(sigAuths) == 0 && len(attReqs) == 0:
		if !fail {
			r.note(true, "%s: no authority could be imported; the rule denies", at)
		}
		b.WriteString("    action: deny\n")
		return false, nil
	}
	if len(sigAuths) > 0 {
		fmt.Fprintf(b, "    signatures:\n      signedIdentity: any\n      authorities:\n%s", strings.Join(sigAuths, ""))
	}
	if len(attReqs) > 0 {
		b.WriteString("    attestations:\n" + strings.Join(attReqs, ""))
	}
	return needRoot, nil
}

// ruleName makes a sealgate rule name of a Kubernetes object name.
func ruleName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "policy"
	}
	return b.String()
}

func indentLines(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
