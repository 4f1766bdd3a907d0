// Package policyimport writes a sealgate policy from the policy of another
// tool an operator already runs, saying in a comment for each thing that
// did not map, and reporting whether anything security-relevant could not
// be carried over (the caller then refuses to call the result equivalent).
package policyimport

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// ErrIncomplete: something security-relevant could not be carried over;
// the written policy says what, in comments.
var ErrIncomplete = errors.New("the imported policy is not equivalent")

// Result is an imported policy.
type Result struct {
	// YAML is the sealgate policy, with a comment for each thing that did
	// not map.
	YAML []byte
	// Notes say, one line each, what did not map; Incomplete says whether
	// any of it weakens or changes a decision.
	Notes      []string
	Incomplete bool
	// Keys are the key files the policy names, to copy into the trust
	// store's keys/ (the policy names them as keys/BASENAME).
	Keys []string
	// Files are files to write beside the policy (inline keys), by path
	// relative to it.
	Files map[string][]byte
}

// containersPolicy is containers-policy.json(5), read strictly.
type containersPolicy struct {
	Default    []requirement                       `json:"default"`
	Transports map[string]map[string][]requirement `json:"transports,omitempty"`
}

type requirement struct {
	Type                string          `json:"type"`
	KeyType             string          `json:"keyType,omitempty"`
	KeyPath             string          `json:"keyPath,omitempty"`
	KeyPaths            []string        `json:"keyPaths,omitempty"`
	KeyData             string          `json:"keyData,omitempty"`
	KeyDatas            []string        `json:"keyDatas,omitempty"`
	Fulcio              *fulcio         `json:"fulcio,omitempty"`
	RekorPublicKeyPath  string          `json:"rekorPublicKeyPath,omitempty"`
	RekorPublicKeyPaths []string        `json:"rekorPublicKeyPaths,omitempty"`
	RekorPublicKeyData  string          `json:"rekorPublicKeyData,omitempty"`
	RekorPublicKeyDatas []string        `json:"rekorPublicKeyDatas,omitempty"`
	PKI                 json.RawMessage `json:"pki,omitempty"`
	SignedIdentity      *identity       `json:"signedIdentity,omitempty"`
}

type fulcio struct {
	CAPath       string `json:"caPath,omitempty"`
	CAData       string `json:"caData,omitempty"`
	OIDCIssuer   string `json:"oidcIssuer,omitempty"`
	SubjectEmail string `json:"subjectEmail,omitempty"`
}

type identity struct {
	Type             string `json:"type"`
	DockerReference  string `json:"dockerReference,omitempty"`
	DockerRepository string `json:"dockerRepository,omitempty"`
	Prefix           string `json:"prefix,omitempty"`
	SignedPrefix     string `json:"signedPrefix,omitempty"`
}

// maxContainersPolicy bounds the input.
const maxContainersPolicy = 1 << 20

// FromContainersPolicy converts containers-policy.json (the "docker"
// transport; others are reported and skipped). Scopes become rules, most
// specific first, as containers/image picks the most specific scope;
// requirements of one scope must all hold, as there.
func FromContainersPolicy(data []byte) (*Result, error) {
	if len(data) > maxContainersPolicy {
		return nil, fmt.Errorf("containers policy: larger than %d bytes", maxContainersPolicy)
	}
	var cp containersPolicy
	if err := strictjson.Unmarshal(data, &cp, 16); err != nil {
		return nil, fmt.Errorf("containers policy: %w", err)
	}
	if cp.Default == nil {
		return nil, errors.New(`containers policy: no "default" (containers/image refuses such a file too)`)
	}
	r := &Result{}
	w := &writer{res: r}
	for t := range cp.Transports {
		if t != "docker" {
			r.note(false, "transport %q is not read by a container runtime's pull; skipped", t)
		}
	}
	docker := cp.Transports["docker"]
	scopes := make([]string, 0, len(docker))
	for s := range docker {
		if s != "" {
			scopes = append(scopes, s)
		}
	}
	slices.SortFunc(scopes, func(a, b string) int {
		if sa, sb := specificity(a), specificity(b); sa != sb {
			return sb - sa
		}
		return strings.Compare(a, b)
	})
	var rules strings.Builder
	for i, s := range scopes {
		patterns, err := scopePatterns(s)
		if err != nil {
			return nil, fmt.Errorf("containers policy: transports.docker[%q]: %w", s, err)
		}
		w.rule(&rules, fmt.Sprintf("scope-%d", i+1), s, patterns, docker[s])
	}
	def := cp.Default
	where := "default"
	if d, ok := docker[""]; ok {
		def, where = d, `transports.docker[""]`
	}
	defaultAction := "deny"
	switch {
	case len(def) == 1 && def[0].Type == "reject":
	case len(def) == 1 && def[0].Type == "insecureAcceptAnything":
		defaultAction = "allow"
	default:
		w.rule(&rules, "default", where, []string{"**"}, def)
	}
	var out strings.Builder
	out.WriteString("# Imported from containers-policy.json by sealgate policy import.\n")
	for _, n := range r.Notes {
		out.WriteString("# NOTE: " + n + "\n")
	}
	if len(r.Keys) > 0 {
		out.WriteString("# Copy these keys into the trust store's keys/ before sealing:\n")
		for _, k := range r.Keys {
			fmt.Fprintf(&out, "#   %s -> keys/%s\n", k, filepath.Base(k))
		}
	}
	fmt.Fprintf(&out, "mode: enforce\ndefault: %s\n", defaultAction)
	if rules.Len() == 0 {
		out.WriteString("rules: []\n")
	} else {
		out.WriteString("rules:\n" + rules.String())
	}
	r.YAML = []byte(out.String())
	if r.Incomplete {
		return r, ErrIncomplete
	}
	return r, nil
}

func (r *Result) note(security bool, format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
	r.Incomplete = r.Incomplete || security
}

// specificity orders scopes as containers/image matches them: a digest or
// tag reference, then longer repository paths, then hosts, then wildcard
// domains.
func specificity(s string) int {
	switch {
	case strings.HasPrefix(s, "*."):
		return 0
	case strings.Contains(s, "@") || strings.Contains(s[strings.LastIndex(s, "/")+1:], ":") && strings.Contains(s, "/"):
		return 1000
	}
	return 1 + strings.Count(s, "/")
}

// scopePatterns turns a docker transport scope into sealgate image
// patterns.
func scopePatterns(s string) ([]string, error) {
	if strings.ContainsAny(s, " \t\"'[]{}?") || strings.Contains(s, "**") {
		return nil, fmt.Errorf("scope %q cannot be a docker reference", s)
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		if strings.ContainsAny(rest, "*/") {
			return nil, fmt.Errorf("wildcard scope %q: only *.DOMAIN is allowed", s)
		}
		return []string{s + "/**"}, nil
	}
	if strings.Contains(s, "*") {
		return nil, fmt.Errorf("scope %q: * only as the first label of a domain", s)
	}
	if strings.Contains(s, "@") {
		return []string{s}, nil
	}
	last := s[strings.LastIndex(s, "/")+1:]
	if strings.Contains(s, "/") && strings.Contains(last, ":") {
		return []string{s, s + "@*"}, nil // a tag
	}
	if !strings.Contains(s, "/") {
		return []string{s + "/**"}, nil // a registry
	}
	return []string{s + ":*", s + "@*", s + "/**"}, nil // a repository or namespace
}

type writer struct{ res *Result }

// rule writes the rule for one scope.
func (w *writer) rule(b *strings.Builder, name, scope string, patterns []string, reqs []requirement) {
	r := w.res
	q := strconv.Quote
	quoted := make([]string, len(patterns))
	for i, p := range patterns {
		quoted[i] = q(p)
	}
	fmt.Fprintf(b, "  # %s\n  - name: %s\n    images: [%s]\n", scope, name, strings.Join(quoted, ", "))
	var auths []string
	var idents []string
	reject, accept := false, false
	for _, req := range reqs {
		switch req.Type {
		case "reject":
			reject = true
		case "insecureAcceptAnything":
			accept = true
		case "signedBy":
			r.note(true, "%s: signedBy (GPG simple signing) has no sealgate equivalent; the scope is denied", scope)
			reject = true
		case "sigstoreSigned":
			a, id, ok := w.sigstore(scope, req)
			if !ok {
				reject = true
				continue
			}
			auths = append(auths, a)
			idents = append(idents, id)
		default:
			r.note(true, "%s: requirement type %q is unknown; the scope is denied", scope, req.Type)
			reject = true
		}
	}
	switch {
	case reject || len(reqs) == 0:
		b.WriteString("    action: deny\n")
		return
	case len(auths) == 0 && accept:
		b.WriteString("    action: allow\n")
		return
	}
	slices.Sort(idents)
	idents = slices.Compact(idents)
	if len(idents) > 1 {
		r.note(true, "%s: its sigstoreSigned requirements ask for different signed identities; the strictest one written is the first, check it", scope)
	}
	// Every requirement must hold (AND): one authority each, all needed.
	fmt.Fprintf(b, "    signatures:\n      threshold: %d\n      signedIdentity: %s\n      authorities:\n%s", len(auths), idents[0], strings.Join(auths, ""))
}

// sigstore converts one sigstoreSigned requirement to an authority.
func (w *writer) sigstore(scope string, req requirement) (auth, ident string, ok bool) {
	r := w.res
	ident = "matchRepository"
	if req.SignedIdentity != nil {
		switch id := req.SignedIdentity; id.Type {
		case "matchRepository", "matchRepoDigestOrExact":
			if id.Type == "matchRepoDigestOrExact" {
				r.note(false, "%s: matchRepoDigestOrExact is written as matchRepository (a tag in the signature is not compared)", scope)
			}
		case "matchExact":
			ident = "matchExact"
		case "remapIdentity":
			ident = fmt.Sprintf("{type: remapIdentity, prefix: %s, signedPrefix: %s}", strconv.Quote(id.Prefix), strconv.Quote(id.SignedPrefix))
		default:
			r.note(true, "%s: signedIdentity %q has no sealgate equivalent; the scope is denied", scope, id.Type)
			return "", "", false
		}
	} else {
		r.note(false, "%s: the default signedIdentity (matchRepoDigestOrExact) is written as matchRepository", scope)
	}
	keys := append(slices.Clone(req.KeyPaths), req.KeyPath)
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "" })
	switch {
	case req.KeyData != "" || len(req.KeyDatas) > 0 || req.RekorPublicKeyData != "" || len(req.RekorPublicKeyDatas) > 0:
		r.note(true, "%s: inline key data (keyData, rekorPublicKeyData) is not imported; write the key to a file in keys/ and name it; the scope is denied", scope)
		return "", "", false
	case len(req.PKI) > 0:
		r.note(true, "%s: pki (a certificate from your own CA) is not imported yet; the scope is denied", scope)
		return "", "", false
	case len(req.RekorPublicKeyPaths) > 1:
		r.note(true, "%s: several Rekor keys are not imported; the scope is denied", scope)
		return "", "", false
	}
	rekor := req.RekorPublicKeyPath
	if len(req.RekorPublicKeyPaths) == 1 {
		rekor = req.RekorPublicKeyPaths[0]
	}
	var b strings.Builder
	switch {
	case req.Fulcio != nil && len(keys) == 0:
		f := req.Fulcio
		if f.OIDCIssuer == "" || f.SubjectEmail == "" {
			r.note(true, "%s: fulcio without oidcIssuer and subjectEmail; the scope is denied", scope)
			return "", "", false
		}
		r.note(true, "%s: copy the Fulcio CA (%s) and Rekor key (%s) into the trust store and name them in trustedRoot: {fulcio: [...], rekor: [...], ctlogs: [...]} (or a trusted_root.json), with the CT log keys to require an SCT, or ctlog: skip on the authority to accept certificates without one", scope, f.CAPath, rekor)
		fmt.Fprintf(&b, "        - keyless:\n            issuer: %s\n            subject: %s\n", strconv.Quote(f.OIDCIssuer), strconv.Quote(f.SubjectEmail))
	case len(keys) == 1 && req.Fulcio == nil:
		r.Keys = append(r.Keys, keys[0])
		fmt.Fprintf(&b, "        - key: keys/%s\n", filepath.Base(keys[0]))
		if rekor != "" {
			r.Keys = append(r.Keys, rekor)
			fmt.Fprintf(&b, "          rekorKey: keys/%s\n", filepath.Base(rekor))
		}
	case len(keys) > 1:
		r.note(true, "%s: keyPaths with several keys (any one may sign) is not imported; write one rule per key set; the scope is denied", scope)
		return "", "", false
	default:
		r.note(true, "%s: sigstoreSigned without a key or fulcio; the scope is denied", scope)
		return "", "", false
	}
	return b.String(), ident, true
}
