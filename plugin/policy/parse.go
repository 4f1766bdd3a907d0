package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"go.yaml.in/yaml/v3"
)

// Size bounds on what a policy reads. A policy is a few KiB, a public key
// well under 1 KiB, a trusted root tens of KiB.
const (
	maxPolicySize = 1 << 20
	maxKeySize    = 64 << 10
	maxRootSize   = 8 << 20
)

// minimalPolicy is quoted when a file is empty.
const minimalPolicy = `the two lines "default: deny" and "rules: []"`

// Load reads a policy file (at most 1 MiB) and parses it. Relative key and
// trusted-root paths resolve against the file's directory.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates policy bytes. path names the file in messages
// and is the base for relative key and trusted-root paths, which are read
// now: a policy that parses is complete. Every error wraps ErrInvalid and is
// an *Error naming the line and key.
func Parse(path string, data []byte, opts ...ParseOption) (*Policy, error) {
	p := &parser{file: path, files: map[string][]byte{}, keys: map[string]*parsedKey{}, readRaw: readFile}
	for _, o := range opts {
		o(p)
	}
	if len(data) > maxPolicySize {
		return nil, p.errAt(0, 0, "", fmt.Sprintf("file is larger than %d bytes; a policy is a few KiB, is this the right file?", maxPolicySize))
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, p.errAt(0, 0, "", fmt.Sprintf("cannot resolve the policy's directory: %v", err))
	}
	p.dir = dir
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	pol, err := p.policy(root)
	if err != nil {
		return nil, err
	}
	pol.Path = path
	pol.Digest, pol.files = digest(data, p.files)
	pol.fileData = p.files
	pol.raw = bytes.Clone(data)
	return pol, nil
}

// ParseOption configures Parse.
type ParseOption func(*parser)

// WithFileReader makes Parse read the files the policy references (keys,
// trusted roots) with read instead of from disk: the daemon passes the
// sealed trust store's content, already checked against the TPM, so that
// nothing is read twice. read gets an absolute path and a size limit.
func WithFileReader(read func(path string, limit int64) ([]byte, error)) ParseOption {
	return func(p *parser) {
		if read != nil {
			p.readRaw = read
		}
	}
}

type parser struct {
	file    string
	dir     string                // absolute directory of the policy
	files   map[string][]byte     // referenced files by absolute path, for the digest
	keys    map[string]*parsedKey // key files already read, by absolute path
	readRaw func(path string, limit int64) ([]byte, error)
}

type parsedKey struct {
	pem []byte
	pub crypto.PublicKey
	der []byte // PKIX, to recognise one key under two file names
}

func (p *parser) errAt(line, col int, key, msg string) *Error {
	return &Error{File: p.file, Line: line, Column: col, Key: key, Msg: msg}
}

func (p *parser) errf(n *yaml.Node, key, format string, args ...any) *Error {
	return p.errAt(n.Line, n.Column, key, fmt.Sprintf(format, args...))
}

// document parses the YAML stream: exactly one document, no anchors or
// aliases.
func (p *parser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, p.empty()
		}
		return nil, p.syntax(data, err)
	}
	if len(doc.Content) == 0 {
		return nil, p.empty()
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, p.syntax(data, err)
	default:
		return nil, p.errf(&next, "", "a second YAML document starts here; a policy file holds exactly one document: remove the --- separator and merge the two")
	}
	root := doc.Content[0]
	if err := p.noAliases(root, ""); err != nil {
		return nil, err
	}
	return root, nil
}

func (p *parser) empty() *Error {
	return p.errAt(1, 1, "", "the policy is empty; a minimal policy, which denies every image, is "+minimalPolicy+"; add rules to allow images")
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the YAML parser's (as opposed to scanner's) messages.
// The YAML library reports their line 0-based, and omits it on the first
// line; scanner errors are reported 1-based.
var parserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntax turns a YAML syntax error into an *Error, locating it when the
// YAML library did not.
func (p *parser) syntax(data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		if contains(parserProblems, m[2]) {
			line++
		}
		return p.errAt(line, 0, "", "YAML syntax: "+m[2])
	}
	// Without a line, the YAML library either stopped on the first line
	// or at a byte its reader refuses (which it does not locate).
	line, col := locateBadByte(data)
	if line == 0 {
		line = 1
	}
	return p.errAt(line, col, "", "YAML syntax: "+msg)
}

// locateBadByte finds the first byte YAML refuses outright (a control
// character, invalid UTF-8, a tab in indentation), for errors the YAML
// library reports without a line. It returns 0, 0 when there is none.
func locateBadByte(data []byte) (line, col int) {
	line, col = 1, 1
	indent := true
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line, col
		case r == '\n':
			line, col, indent = line+1, 1, true
			i += size
			continue
		case r == '\t' && indent:
			return line, col
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return line, col
		case r != ' ' && r != '-':
			indent = false
		}
		i += size
		col++
	}
	return 0, 0
}

// noAliases refuses anchors and aliases anywhere in the document.
func (p *parser) noAliases(n *yaml.Node, path string) error {
	switch {
	case n.Kind == yaml.AliasNode:
		return p.errf(n, path, "aliases (*%s) are not allowed: one edit to an anchor would change every rule that uses it, invisibly; write the value out", n.Value)
	case n.Anchor != "":
		return p.errf(n, path, "anchors (&%s) are not allowed: aliases to them would let one edit change many rules invisibly; write each value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := p.noAliases(n.Content[i], path); err != nil {
				return err
			}
			if err := p.noAliases(n.Content[i+1], join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := p.noAliases(c, index(path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// describe names a node's kind for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!null":
			return "empty (null)"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return fmt.Sprintf("a %s value", n.ShortTag())
	}
	return "something else"
}

// mapping holds the keys of one YAML mapping, checked against the keys
// allowed there.
type mapping struct {
	node *yaml.Node
	path string
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

func (m *mapping) has(k string) bool { return m.vals[k] != nil }

func (p *parser) mapping(n *yaml.Node, path string, allowed ...string) (*mapping, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, path, "must be a mapping (key: value lines), not %s", describe(n))
	}
	m := &mapping{node: n, path: path, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, p.errf(k, path, "keys must be plain strings, not %s", describe(k))
		}
		if first := m.keys[k.Value]; first != nil {
			return nil, p.errf(k, join(path, k.Value), "duplicate key (first at line %d); keep one of them", first.Line)
		}
		if !contains(allowed, k.Value) {
			return nil, p.errf(k, join(path, k.Value), "%s", unknownKey(k.Value, allowed))
		}
		m.keys[k.Value], m.vals[k.Value] = k, v
	}
	return m, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func unknownKey(k string, allowed []string) string {
	for _, a := range allowed {
		if strings.EqualFold(a, k) {
			return fmt.Sprintf("unknown key; did you mean %q? (keys are case-sensitive)", a)
		}
	}
	return fmt.Sprintf("unknown key; allowed here: %s", strings.Join(allowed, ", "))
}

// str reads a non-empty string scalar.
func (p *parser) str(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			hint = fmt.Sprintf("; quote it if you mean the text: %q", n.Value)
		}
		return "", p.errf(n, path, "must be a string, not %s%s", describe(n), hint)
	}
	if n.Value == "" {
		return "", p.errf(n, path, "must not be empty")
	}
	return n.Value, nil
}

// enum reads a string that must be one of allowed.
func (p *parser) enum(n *yaml.Node, path string, allowed ...string) (string, error) {
	s, err := p.str(n, path)
	if err != nil {
		return "", err
	}
	if !contains(allowed, s) {
		return "", p.errf(n, path, "%q is not one of %s", s, strings.Join(allowed, ", "))
	}
	return s, nil
}

func (p *parser) list(n *yaml.Node, path string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, path, "must be a list, not %s", describe(n))
	}
	return n.Content, nil
}

// nonEmptyList reads a list that must have at least one entry; what says
// what an entry is, for the message.
func (p *parser) nonEmptyList(n *yaml.Node, path, what string) ([]*yaml.Node, error) {
	items, err := p.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, p.errf(n, path, "must list at least one %s", what)
	}
	return items, nil
}

func (p *parser) policy(root *yaml.Node) (*Policy, error) {
	m, err := p.mapping(root, "", "mode", "default", "offline", "trustedRoot", "rules")
	if err != nil {
		return nil, err
	}
	pol := &Policy{Mode: ModeEnforce, Default: ActionDeny}
	if v := m.vals["mode"]; v != nil {
		s, err := p.enum(v, "mode", string(ModeEnforce), string(ModeWarn), string(ModeAudit))
		if err != nil {
			return nil, err
		}
		pol.Mode = Mode(s)
	}
	if v := m.vals["default"]; v != nil {
		if v.Kind == yaml.ScalarNode && v.Value == string(ActionVerify) {
			return nil, p.errf(v, "default", "must be deny or allow; to verify images, add a rule with signatures (images: [\"**\"] matches every image)")
		}
		s, err := p.enum(v, "default", string(ActionDeny), string(ActionAllow))
		if err != nil {
			return nil, err
		}
		pol.Default = Action(s)
	}
	if v := m.vals["offline"]; v != nil {
		if pol.Offline, err = p.offline(v); err != nil {
			return nil, err
		}
	}
	if v := m.vals["trustedRoot"]; v != nil {
		if v.Kind == yaml.MappingNode {
			if pol.PEMRoots, err = p.pemRoots(v); err != nil {
				return nil, err
			}
		} else if pol.TrustedRoots, err = p.trustedRoots(v); err != nil {
			return nil, err
		}
	}
	if v := m.vals["rules"]; v != nil {
		if pol.Rules, err = p.rules(v, pol); err != nil {
			return nil, err
		}
	}
	return pol, nil
}

func (p *parser) offline(n *yaml.Node) (Offline, error) {
	m, err := p.mapping(n, "offline", "maxVerdictAge")
	if err != nil {
		return Offline{}, err
	}
	var o Offline
	v := m.vals["maxVerdictAge"]
	if v == nil {
		return o, nil
	}
	const path = "offline.maxVerdictAge"
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" && v.Value == "0" {
		return o, nil
	}
	s, err := p.str(v, path)
	if err != nil {
		return o, p.errf(v, path, "must be a duration such as 168h or 30m, not %s", describe(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return o, p.errf(v, path, "%q is not a duration; write one such as 168h, 24h or 90m", s)
	}
	if d < 0 {
		return o, p.errf(v, path, "must not be negative; 0s means cached verdicts never serve offline")
	}
	o.MaxVerdictAge = d
	return o, nil
}

func (p *parser) trustedRoots(n *yaml.Node) ([]string, error) {
	const path = "trustedRoot"
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		var err error
		if items, err = p.nonEmptyList(n, path, "trusted_root.json path"); err != nil {
			return nil, err
		}
	}
	var roots []string
	for i, item := range items {
		ipath := path
		if n.Kind == yaml.SequenceNode {
			ipath = index(path, i)
		}
		rel, err := p.str(item, ipath)
		if err != nil {
			return nil, p.errf(item, ipath, "must be a path to a trusted_root.json or a list of them, not %s", describe(item))
		}
		file := p.resolve(rel)
		if contains(roots, file) {
			return nil, p.errf(item, ipath, "%s is listed twice; remove one", file)
		}
		data, err := p.read(item, ipath, "trusted root", file, maxRootSize)
		if err != nil {
			return nil, err
		}
		if !json.Valid(data) {
			return nil, p.errf(item, ipath, "%s is not JSON; expected a Sigstore trusted_root.json (as `cosign trusted-root create` or the Sigstore TUF repository provide)", file)
		}
		roots = append(roots, file)
	}
	return roots, nil
}

// rootsHaveCTLogs reports whether any of the trusted roots (already read)
// lists a CT log.
func (p *parser) rootsHaveCTLogs(pol *Policy) bool {
	if pol.PEMRoots != nil && len(pol.PEMRoots.CTLogs) > 0 {
		return true
	}
	for _, r := range pol.TrustedRoots {
		var doc struct {
			CTLogs []json.RawMessage `json:"ctlogs"`
		}
		if json.Unmarshal(p.files[r], &doc) == nil && len(doc.CTLogs) > 0 {
			return true
		}
	}
	return false
}

// pemRoots reads trustedRoot as a mapping of PEM files: fulcio and tsa
// (certificate chains), rekor and ctlogs (public keys); each entry a path,
// or {file, validFrom, validUntil} with RFC 3339 times.
func (p *parser) pemRoots(n *yaml.Node) (*PEMRoots, error) {
	const path = "trustedRoot"
	m, err := p.mapping(n, path, "fulcio", "rekor", "ctlogs", "tsa")
	if err != nil {
		return nil, err
	}
	r := &PEMRoots{}
	for _, f := range []struct {
		key, what string
		dst       *[]PEMMaterial
		block     string
	}{
		{"fulcio", "Fulcio CA chain", &r.Fulcio, "CERTIFICATE"},
		{"rekor", "Rekor public key", &r.Rekor, "PUBLIC KEY"},
		{"ctlogs", "CT log public key", &r.CTLogs, "PUBLIC KEY"},
		{"tsa", "TSA certificate chain", &r.TSA, "CERTIFICATE"},
	} {
		v := m.vals[f.key]
		if v == nil {
			continue
		}
		items, err := p.nonEmptyList(v, join(path, f.key), f.what+" file")
		if err != nil {
			return nil, err
		}
		for i, item := range items {
			ipath := index(join(path, f.key), i)
			mat, err := p.pemMaterial(item, ipath, f.what, f.block)
			if err != nil {
				return nil, err
			}
			*f.dst = append(*f.dst, mat)
		}
	}
	if len(r.Fulcio)+len(r.Rekor)+len(r.TSA) == 0 {
		return nil, p.errf(n, path, "names no fulcio, rekor or tsa file: keyless verification needs the Fulcio CA chain (PEM), a certificate authority a TSA chain or Rekor key")
	}
	return r, nil
}

func (p *parser) pemMaterial(n *yaml.Node, path, what, block string) (PEMMaterial, error) {
	var mat PEMMaterial
	fileNode := n
	if n.Kind == yaml.MappingNode {
		m, err := p.mapping(n, path, "file", "validFrom", "validUntil")
		if err != nil {
			return mat, err
		}
		if fileNode = m.vals["file"]; fileNode == nil {
			return mat, p.errf(n, join(path, "file"), "is missing")
		}
		for _, t := range []struct {
			key string
			dst *time.Time
		}{{"validFrom", &mat.ValidFrom}, {"validUntil", &mat.ValidUntil}} {
			v := m.vals[t.key]
			if v == nil {
				continue
			}
			s, err := p.str(v, join(path, t.key))
			if err != nil {
				return mat, err
			}
			if *t.dst, err = time.Parse(time.RFC3339, s); err != nil {
				return mat, p.errf(v, join(path, t.key), "%q is not an RFC 3339 time such as 2025-01-01T00:00:00Z", s)
			}
		}
		if !mat.ValidFrom.IsZero() && !mat.ValidUntil.IsZero() && !mat.ValidUntil.After(mat.ValidFrom) {
			return mat, p.errf(n, path, "validUntil must come after validFrom")
		}
	}
	rel, err := p.str(fileNode, path)
	if err != nil {
		return mat, err
	}
	mat.File = p.resolve(rel)
	data, err := p.read(fileNode, path, what, mat.File, maxRootSize)
	if err != nil {
		return mat, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != block {
		return mat, p.errf(fileNode, path, "%s is not a PEM %s file (expected a %s block)", mat.File, what, block)
	}
	mat.PEM = data
	return mat, nil
}

// resolve makes a policy path absolute, relative to the policy's directory.
func (p *parser) resolve(rel string) string {
	if filepath.IsAbs(rel) {
		return filepath.Clean(rel)
	}
	return filepath.Join(p.dir, rel)
}

// read reads a referenced file, bounded, and records it for the digest.
func (p *parser) read(n *yaml.Node, path, what, file string, limit int64) ([]byte, error) {
	if data, ok := p.files[file]; ok {
		return data, nil
	}
	data, err := p.readRaw(file, limit)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, p.errf(n, path, "%s file %s does not exist; relative paths resolve against the policy's directory %s", what, file, p.dir)
	case errors.Is(err, errTooLarge):
		return nil, p.errf(n, path, "%s file %s is larger than %d bytes; is it the right file?", what, file, limit)
	case err != nil:
		return nil, p.errf(n, path, "cannot read %s file: %v", what, err)
	}
	p.files[file] = data
	return data, nil
}

var errTooLarge = errors.New("file too large")

func readFile(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", file)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (p *parser) rules(n *yaml.Node, pol *Policy) ([]*Rule, error) {
	items, err := p.list(n, "rules")
	if err != nil {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			return nil, p.errf(n, "rules", "is empty; write rules: [] for a policy with no rules, or list rules")
		}
		return nil, err
	}
	rules := make([]*Rule, 0, len(items))
	names := map[string]int{}
	for i, item := range items {
		r, nameNode, err := p.rule(item, index("rules", i), pol)
		if err != nil {
			return nil, err
		}
		if first, dup := names[r.Name]; dup {
			return nil, p.errf(nameNode, index("rules", i)+".name", "rule name %q is already used by the rule at line %d; rule names must be unique", r.Name, first)
		}
		names[r.Name] = r.Line
		rules = append(rules, r)
	}
	return rules, nil
}

// rule parses one rule; it also returns the node of its name, for the
// duplicate-name message.
func (p *parser) rule(n *yaml.Node, path string, pol *Policy) (*Rule, *yaml.Node, error) {
	r, err := p.ruleBody(n, path, pol)
	if err != nil {
		return nil, nil, err
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == "name" {
			return r, n.Content[j+1], nil
		}
	}
	return r, n, nil
}

func (p *parser) ruleBody(n *yaml.Node, path string, pol *Policy) (*Rule, error) {
	m, err := p.mapping(n, path, "name", "images", "namespaces", "mode", "action", "signatures", "attestations")
	if err != nil {
		return nil, err
	}
	r := &Rule{Line: n.Line, Mode: pol.Mode, Action: ActionVerify}

	v := m.vals["name"]
	if v == nil {
		return nil, p.errf(n, join(path, "name"), "missing; every rule needs a unique name (letters, digits, . _ -), which decisions report")
	}
	if r.Name, err = p.str(v, join(path, "name")); err != nil {
		return nil, err
	}
	if !ruleName.MatchString(r.Name) {
		return nil, p.errf(v, join(path, "name"), "%q is not a valid rule name; use up to 128 letters, digits, '.', '_' and '-', starting with a letter or digit", r.Name)
	}
	if r.Name == "default" {
		return nil, p.errf(v, join(path, "name"), "the name \"default\" is reserved: decisions report it when no rule matched; choose another")
	}

	v = m.vals["images"]
	if v == nil {
		return nil, p.errf(n, join(path, "images"), "missing; list the image patterns the rule applies to, e.g. images: [\"registry.example.com/myorg/**\"]")
	}
	items, err := p.nonEmptyList(v, join(path, "images"), "image pattern")
	if err != nil {
		return nil, err
	}
	for i, item := range items {
		ipath := index(join(path, "images"), i)
		s, err := p.str(item, ipath)
		if err != nil {
			return nil, err
		}
		norm, err := normalisePattern(s)
		if err != nil {
			return nil, p.errf(item, ipath, "%v", err)
		}
		g, err := compileGlob(norm)
		if err != nil {
			return nil, p.errf(item, ipath, "%v", err)
		}
		r.Images, r.images = append(r.Images, norm), append(r.images, g)
	}

	if v := m.vals["namespaces"]; v != nil {
		items, err := p.list(v, join(path, "namespaces"))
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, p.errf(v, join(path, "namespaces"), "an empty list would match no namespace; remove the key to match every namespace, or list globs such as \"*\"")
		}
		for i, item := range items {
			ipath := index(join(path, "namespaces"), i)
			s, err := p.str(item, ipath)
			if err != nil {
				return nil, err
			}
			g, err := namespaceGlob(s)
			if err != nil {
				return nil, p.errf(item, ipath, "%v", err)
			}
			r.Namespaces, r.namespaces = append(r.Namespaces, s), append(r.namespaces, g)
		}
	}

	if v := m.vals["mode"]; v != nil {
		s, err := p.enum(v, join(path, "mode"), string(ModeEnforce), string(ModeWarn), string(ModeAudit))
		if err != nil {
			return nil, err
		}
		r.Mode = Mode(s)
	}
	if v := m.vals["action"]; v != nil {
		s, err := p.enum(v, join(path, "action"), string(ActionVerify), string(ActionAllow), string(ActionDeny))
		if err != nil {
			return nil, err
		}
		r.Action = Action(s)
	}

	if r.Action != ActionVerify {
		for _, k := range []string{"signatures", "attestations"} {
			if m.has(k) {
				return nil, p.errf(m.keys[k], join(path, k), "action %s never checks %s; remove %s, or set action: verify", r.Action, k, k)
			}
		}
		return r, nil
	}
	if !m.has("signatures") && !m.has("attestations") {
		at := n
		if k := m.keys["action"]; k != nil {
			at = k
		}
		return nil, p.errf(at, path, "rule %q verifies but requires nothing; add signatures (or attestations), or set action: allow or action: deny", r.Name)
	}
	if v := m.vals["signatures"]; v != nil {
		if r.Signatures, err = p.signatures(v, join(path, "signatures"), pol); err != nil {
			return nil, err
		}
	}
	if v := m.vals["attestations"]; v != nil {
		items, err := p.nonEmptyList(v, join(path, "attestations"), "attestation (predicateType and authorities)")
		if err != nil {
			return nil, err
		}
		for i, item := range items {
			a, err := p.attestation(item, index(join(path, "attestations"), i), pol)
			if err != nil {
				return nil, err
			}
			r.Attestations = append(r.Attestations, a)
		}
	}
	return r, nil
}

func (p *parser) signatures(n *yaml.Node, path string, pol *Policy) (*Signatures, error) {
	m, err := p.mapping(n, path, "threshold", "signedIdentity", "acceptPlatformSignature", "authorities")
	if err != nil {
		return nil, err
	}
	s := &Signatures{Threshold: 1, SignedIdentity: MatchRepository}
	v := m.vals["authorities"]
	if v == nil {
		return nil, p.errf(n, join(path, "authorities"), "missing; list who may sign, e.g. authorities: [{key: keys/release.pub}]")
	}
	if s.Authorities, err = p.authorities(v, join(path, "authorities"), pol); err != nil {
		return nil, err
	}
	if v := m.vals["threshold"]; v != nil {
		tpath := join(path, "threshold")
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
			return nil, p.errf(v, tpath, "must be a whole number of authorities, not %s", describe(v))
		}
		t, err := strconv.Atoi(v.Value)
		if err != nil {
			// YAML ints may be written 0x10, 0o7 or 1_000; decode those
			// through the YAML library.
			if err := v.Decode(&t); err != nil {
				return nil, p.errf(v, tpath, "%s is not a usable number", v.Value)
			}
		}
		switch {
		case t < 1:
			return nil, p.errf(v, tpath, "threshold %d must be at least 1; an empty requirement would allow unsigned images (use action: allow for that)", t)
		case t > len(s.Authorities):
			return nil, p.errf(v, tpath, "threshold %d exceeds the %d authorities; lower it or add authorities", t, len(s.Authorities))
		}
		s.Threshold = t
	}
	if v := m.vals["signedIdentity"]; v != nil {
		if err := p.signedIdentity(v, join(path, "signedIdentity"), s); err != nil {
			return nil, err
		}
	}
	if v := m.vals["acceptPlatformSignature"]; v != nil {
		apath := join(path, "acceptPlatformSignature")
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
			return nil, p.errf(v, apath, "must be true or false, not %s", describe(v))
		}
		if err := v.Decode(&s.AcceptPlatformSignature); err != nil {
			return nil, p.errf(v, apath, "must be true or false, not %s", describe(v))
		}
	}
	return s, nil
}

func (p *parser) attestation(n *yaml.Node, path string, pol *Policy) (*Attestation, error) {
	m, err := p.mapping(n, path, "predicateType", "authorities", "conditions")
	if err != nil {
		return nil, err
	}
	a := &Attestation{Line: n.Line}
	v := m.vals["predicateType"]
	if v == nil {
		return nil, p.errf(n, join(path, "predicateType"), "missing; name the in-toto predicate type required, e.g. https://slsa.dev/provenance/v1")
	}
	if a.PredicateType, err = p.str(v, join(path, "predicateType")); err != nil {
		return nil, err
	}
	if err := checkPredicateType(a.PredicateType); err != nil {
		return nil, p.errf(v, join(path, "predicateType"), "%v", err)
	}
	v = m.vals["authorities"]
	if v == nil {
		return nil, p.errf(n, join(path, "authorities"), "missing; list who may sign the attestation, e.g. authorities: [{key: keys/release.pub}]")
	}
	if a.Authorities, err = p.authorities(v, join(path, "authorities"), pol); err != nil {
		return nil, err
	}
	if v := m.vals["conditions"]; v != nil {
		if a.Conditions, err = p.conditions(v, join(path, "conditions")); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// cosignPredicateTypes maps the short names `cosign attest --type` accepts
// to the URIs it writes into the statement, which is what a policy must
// name (the statement carries the URI, never the short name).
var cosignPredicateTypes = map[string]string{
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
	"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"spdx":             "https://spdx.dev/Document",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"link":             "https://in-toto.io/Link/v1",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
}

// uriScheme is RFC 3986's scheme production.
var uriScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// checkPredicateType requires an absolute URI (in-toto predicate types are
// URIs, compared exactly): a scheme, then a host or an opaque part, no
// whitespace. It catches cosign's short names and other slips that would
// make the rule unsatisfiable.
func checkPredicateType(s string) error {
	if uri, ok := cosignPredicateTypes[strings.ToLower(s)]; ok {
		return fmt.Errorf("%q is a cosign --type short name; statements carry the URI it stands for, write predicateType: %s", s, uri)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q contains whitespace or control characters; a predicate type is a URI such as https://slsa.dev/provenance/v1", s)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	u, err := url.Parse(s)
	if !ok || err != nil || !uriScheme.MatchString(scheme) || rest == "" || (u.Host == "" && u.Opaque == "") {
		return fmt.Errorf("%q is not a URI; in-toto predicate types are URIs compared exactly, such as https://slsa.dev/provenance/v1", s)
	}
	return nil
}

func (p *parser) authorities(n *yaml.Node, path string, pol *Policy) ([]*Authority, error) {
	items, err := p.nonEmptyList(n, path, "authority (key or keyless)")
	if err != nil {
		return nil, err
	}
	var out []*Authority
	var ids []string
	for i, item := range items {
		ipath := index(path, i)
		a, id, err := p.authority(item, ipath, pol)
		if err != nil {
			return nil, err
		}
		for j, other := range ids {
			if other == id {
				return nil, p.errf(item, ipath, "is the same signer as %s; a threshold counts distinct signers, so list each once", index(path, j))
			}
		}
		out, ids = append(out, a), append(ids, id)
	}
	return out, nil
}

// authority parses one authority and returns an identity string equal for
// two entries that name the same signer (whatever their transparency-log
// settings).
func (p *parser) authority(n *yaml.Node, path string, pol *Policy) (*Authority, string, error) {
	m, err := p.mapping(n, path, "key", "keyless", "certificate", "rekorKey", "transparencyLog", "ctlog")
	if err != nil {
		return nil, "", err
	}
	var a *Authority
	var id string
	kinds := 0
	for _, k := range []string{"key", "keyless", "certificate"} {
		if m.has(k) {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return nil, "", p.errf(n, path, "an authority has exactly one of key, keyless or certificate; split it into separate list entries")
	case m.has("key"):
		k, der, err := p.publicKey(m.vals["key"], join(path, "key"), "key")
		if err != nil {
			return nil, "", err
		}
		ka := &KeyAuthority{Path: k.Path, File: k.File, PEM: k.PEM, PublicKey: k.PublicKey}
		if v := m.vals["rekorKey"]; v != nil {
			rk, rder, err := p.publicKey(v, join(path, "rekorKey"), "Rekor key")
			if err != nil {
				return nil, "", err
			}
			if bytes.Equal(rder, der) {
				return nil, "", p.errf(v, join(path, "rekorKey"), "is the same public key as key; a signer holding the log's key could vouch for its own log entries: name the Rekor instance's public key (its /api/v1/log/publicKey)")
			}
			ka.Rekor = rk
		}
		a, id = &Authority{Name: "key " + k.Path, Key: ka}, "key\x00"+string(der)
	case m.has("keyless"):
		if k := m.keys["rekorKey"]; k != nil {
			return nil, "", p.errf(k, join(path, "rekorKey"), "applies to key authorities only; a keyless authority's log entries are verified against the Rekor logs of trustedRoot")
		}
		kl, name, kid, err := p.keyless(m.vals["keyless"], join(path, "keyless"))
		if err != nil {
			return nil, "", err
		}
		if !pol.HasSigstoreRoots() || (pol.PEMRoots != nil && len(pol.PEMRoots.Fulcio) == 0) {
			return nil, "", p.errf(m.keys["keyless"], join(path, "keyless"), "keyless verification needs a Sigstore trusted root with a Fulcio CA; add trustedRoot: roots/trusted_root.json at the top level (or fulcio: under a trustedRoot of PEM files)")
		}
		a, id = &Authority{Name: "keyless " + name, Keyless: kl}, "keyless\x00"+kid
		if v := m.vals["ctlog"]; v != nil {
			s, err := p.enum(v, join(path, "ctlog"), "required", "skip")
			if err != nil {
				return nil, "", err
			}
			a.SkipSCT = s == "skip"
		}
		if !a.SkipSCT && !p.rootsHaveCTLogs(pol) {
			return nil, "", p.errf(m.keys["keyless"], join(path, "keyless"), "the trusted root has no CT logs, so the certificate's SCT cannot be checked: add the CT logs' keys to the trusted root (cosign trusted-root create --ctfe-key), or write ctlog: skip on this authority to accept certificates without an SCT, as cosign's --insecure-ignore-sct does")
		}
	case m.has("certificate"):
		if k := m.keys["rekorKey"]; k != nil {
			return nil, "", p.errf(k, join(path, "rekorKey"), "applies to key authorities only; a certificate authority's log entries are verified against the Rekor logs of trustedRoot")
		}
		c, name, cid, err := p.certificateAuthority(m.vals["certificate"], join(path, "certificate"), pol)
		if err != nil {
			return nil, "", err
		}
		a, id = &Authority{Name: "certificate " + name, Certificate: c}, "certificate\x00"+cid
	default:
		return nil, "", p.errf(n, path, "an authority needs key: (a public key file), keyless: (issuer and subject) or certificate: (your own CA's roots and the subject)")
	}
	if k := m.keys["ctlog"]; k != nil && a.Keyless == nil {
		return nil, "", p.errf(k, join(path, "ctlog"), "applies to keyless authorities only (their Fulcio certificates carry SCTs)")
	}

	a.TransparencyLog = TlogOptional
	if a.Keyless != nil || (a.Key != nil && a.Key.Rekor != nil) {
		a.TransparencyLog = TlogRequired
	}
	if v := m.vals["transparencyLog"]; v != nil {
		tpath := join(path, "transparencyLog")
		s, err := p.enum(v, tpath, string(TlogRequired), string(TlogOptional))
		if err != nil {
			return nil, "", err
		}
		a.TransparencyLog = TransparencyLog(s)
		if a.Certificate != nil && a.TransparencyLog == TlogRequired && !pol.HasSigstoreRoots() {
			return nil, "", p.errf(v, tpath, "log entries of a certificate authority are checked against the Rekor logs of trustedRoot, and the policy has none; add trustedRoot at the top level")
		}
		if a.Key != nil && a.Key.Rekor == nil && a.TransparencyLog == TlogRequired && !pol.HasSigstoreRoots() {
			return nil, "", p.errf(v, tpath, "a key authority without rekorKey checks log entries against the Rekor logs of trustedRoot, and the policy has none; add rekorKey: keys/rekor.pub to this authority, or trustedRoot at the top level")
		}
	}
	return a, id, nil
}

// publicKey reads a PEM public key file (what names it in messages: "key",
// "Rekor key") and returns it with its PKIX DER, which is equal for one key
// under two file names.
func (p *parser) publicKey(n *yaml.Node, path, what string) (*PublicKeyFile, []byte, error) {
	rel, err := p.str(n, path)
	if err != nil {
		return nil, nil, err
	}
	file := p.resolve(rel)
	k := p.keys[file]
	if k == nil {
		data, err := p.read(n, path, what, file, maxKeySize)
		if err != nil {
			return nil, nil, err
		}
		if k, err = parseKey(data); err != nil {
			return nil, nil, p.errf(n, path, "%s file %s: %v", what, file, err)
		}
		p.keys[file] = k
	}
	return &PublicKeyFile{Path: rel, File: file, PEM: k.pem, PublicKey: k.pub}, k.der, nil
}

// parseKey accepts exactly one PEM public key of a type and size sealgate
// verifies: ECDSA P-256 or P-384, Ed25519, RSA of at least 2048 bits.
func parseKey(data []byte) (*parsedKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block; expected a public key (-----BEGIN PUBLIC KEY-----) such as the cosign.pub that cosign generate-key-pair writes")
	}
	if strings.Contains(block.Type, "PRIVATE") {
		return nil, errors.New("holds a private key; reference the public key (cosign.pub) and keep private keys off the node")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("holds more than one PEM block or trailing data; put exactly one public key in each file")
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("not a usable public key (%v)", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("ECDSA curve %s is not supported; use P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too weak; use at least 2048 bits", k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("key type %T is not supported; use ECDSA P-256/P-384, Ed25519 or RSA >= 2048 bits", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("not a usable public key (%v)", err)
	}
	return &parsedKey{pem: data, pub: pub, der: der}, nil
}

// keylessExtensions are the optional Fulcio certificate extensions a
// keyless authority may match, with the short label Authority.Name uses.
var keylessExtensions = []struct {
	key, label string
	field      func(*KeylessAuthority) *StringMatch
}{
	{"sourceRepositoryURI", "repo", func(k *KeylessAuthority) *StringMatch { return &k.SourceRepositoryURI }},
	{"sourceRepositoryRef", "ref", func(k *KeylessAuthority) *StringMatch { return &k.SourceRepositoryRef }},
	{"buildSignerURI", "signer", func(k *KeylessAuthority) *StringMatch { return &k.BuildSignerURI }},
	{"githubWorkflowRepository", "gh-repo", func(k *KeylessAuthority) *StringMatch { return &k.GitHubWorkflowRepository }},
	{"githubWorkflowRef", "gh-ref", func(k *KeylessAuthority) *StringMatch { return &k.GitHubWorkflowRef }},
}

// keyless parses a keyless identity. It returns the authority's name
// ("<issuer> <subject>", each as written, then " repo=…", " ref=…",
// " signer=…" for the extensions set) and an identity string that tells
// exact values from regular expressions.
func (p *parser) keyless(n *yaml.Node, path string) (*KeylessAuthority, string, string, error) {
	allowed := []string{"issuer", "issuerRegExp", "subject", "subjectRegExp"}
	for _, e := range keylessExtensions {
		allowed = append(allowed, e.key, e.key+"RegExp")
	}
	m, err := p.mapping(n, path, allowed...)
	if err != nil {
		return nil, "", "", err
	}
	k := &KeylessAuthority{}
	issuer, err := p.exactOrRegExp(m, "issuer", "the OIDC issuer, e.g. issuer: https://token.actions.githubusercontent.com")
	if err != nil {
		return nil, "", "", err
	}
	subject, err := p.exactOrRegExp(m, "subject", "the certificate identity, e.g. subject: https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main")
	if err != nil {
		return nil, "", "", err
	}
	k.Issuer, k.IssuerRegExp = issuer.Exact, issuer.RegExp
	k.Subject, k.SubjectRegExp = subject.Exact, subject.RegExp
	name := written(issuer) + " " + written(subject)
	id := matchID(issuer) + "\x00" + matchID(subject)
	for _, e := range keylessExtensions {
		sm, err := p.stringMatch(m, e.key)
		if err != nil {
			return nil, "", "", err
		}
		*e.field(k) = sm
		if !sm.IsZero() {
			name += " " + e.label + "=" + written(sm)
		}
		id += "\x00" + matchID(sm)
	}
	return k, name, id, nil
}

// written is a match as the policy wrote it (a regular expression without
// a marker), for Authority.Name.
func written(m StringMatch) string {
	if m.RegExp != nil {
		return m.RegExp.String()
	}
	return m.Exact
}

// matchID tells an exact value from a regular expression of the same text.
func matchID(m StringMatch) string {
	switch {
	case m.RegExp != nil:
		return "r:" + m.RegExp.String()
	case m.Exact != "":
		return "e:" + m.Exact
	}
	return ""
}

// exactOrRegExp reads exactly one of key and keyRegExp.
func (p *parser) exactOrRegExp(m *mapping, key, example string) (StringMatch, error) {
	if rkey := key + "RegExp"; m.has(key) && m.has(rkey) {
		return StringMatch{}, p.errf(m.keys[rkey], join(m.path, rkey), "set exactly one of %s and %s; remove one", key, rkey)
	}
	sm, err := p.stringMatch(m, key)
	if err != nil {
		return StringMatch{}, err
	}
	if sm.IsZero() {
		rkey := key + "RegExp"
		return StringMatch{}, p.errf(m.node, join(m.path, key), "missing; set %s or %s: %s", key, rkey, example)
	}
	return sm, nil
}

// stringMatch reads at most one of key and keyRegExp (a Go RE2 regular
// expression, compiled now); neither gives the zero StringMatch.
func (p *parser) stringMatch(m *mapping, key string) (StringMatch, error) {
	rkey := key + "RegExp"
	switch {
	case m.has(key) && m.has(rkey):
		return StringMatch{}, p.errf(m.keys[rkey], join(m.path, rkey), "set only one of %s and %s; remove one", key, rkey)
	case m.has(key):
		s, err := p.str(m.vals[key], join(m.path, key))
		if err != nil {
			return StringMatch{}, err
		}
		return StringMatch{Exact: s}, nil
	case m.has(rkey):
		s, err := p.str(m.vals[rkey], join(m.path, rkey))
		if err != nil {
			return StringMatch{}, err
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return StringMatch{}, p.errf(m.vals[rkey], join(m.path, rkey), "not a valid regular expression (Go RE2 syntax): %v", err)
		}
		return StringMatch{RegExp: re}, nil
	}
	return StringMatch{}, nil
}

// signedIdentity reads signatures.signedIdentity: a name (matchRepository,
// matchExact, any), or, as containers-policy.json writes it, a mapping with
// type (and, for remapIdentity, prefix and signedPrefix).
func (p *parser) signedIdentity(n *yaml.Node, path string, s *Signatures) error {
	names := []string{string(MatchRepository), string(MatchExact), string(MatchAny)}
	if n.Kind == yaml.ScalarNode {
		id, err := p.enum(n, path, names...)
		if err != nil {
			return err
		}
		s.SignedIdentity = SignedIdentity(id)
		return nil
	}
	m, err := p.mapping(n, path, "type", "prefix", "signedPrefix")
	if err != nil {
		return err
	}
	tn := m.vals["type"]
	if tn == nil {
		return p.errf(n, path, "type is missing: one of %s, %s", strings.Join(names, ", "), RemapIdentity)
	}
	t, err := p.enum(tn, join(path, "type"), append(names, string(RemapIdentity))...)
	if err != nil {
		return err
	}
	s.SignedIdentity = SignedIdentity(t)
	if s.SignedIdentity != RemapIdentity {
		for _, k := range []string{"prefix", "signedPrefix"} {
			if v := m.vals[k]; v != nil {
				return p.errf(v, join(path, k), "only with type remapIdentity")
			}
		}
		return nil
	}
	r := &Remap{}
	for _, f := range []struct {
		key string
		dst *string
	}{{"prefix", &r.Prefix}, {"signedPrefix", &r.SignedPrefix}} {
		v := m.vals[f.key]
		if v == nil {
			return p.errf(n, join(path, f.key), "is missing: remapIdentity needs prefix and signedPrefix (a registry host, optionally with a path: mirror.example.com/library)")
		}
		raw, err := p.str(v, join(path, f.key))
		if err != nil {
			return err
		}
		canon, err := canonicalPrefix(raw)
		if err != nil {
			return p.errf(v, join(path, f.key), "%v", err)
		}
		*f.dst = canon
	}
	s.Remap = r
	return nil
}

// canonicalPrefix puts a repository prefix ("host[:port][/path]") in the
// form rules and verdicts use: the registry canonical, the path as given
// (Docker Hub's official images are docker.io/library/NAME).
// A prefix without a registry host is refused: it would be read as a Docker
// Hub repository.
func canonicalPrefix(s string) (string, error) {
	host, rest, _ := strings.Cut(s, "/")
	if host == "" || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", fmt.Errorf("%q does not start with a registry host (with a dot or a port, or localhost)", s)
	}
	canon, err := CanonicalRegistry(host)
	if err != nil {
		return "", err
	}
	if rest == "" {
		return canon, nil
	}
	if strings.HasSuffix(rest, "/") || strings.Contains(rest, "//") || strings.ContainsAny(rest, "*?@: ") {
		return "", fmt.Errorf("%q: the path after the host must be repository components (no wildcard, tag or digest)", s)
	}
	return canon + "/" + rest, nil
}
