package policy

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// maxCertificates bounds the certificates of one PEM file.
const maxCertificates = 32

// certificateAuthority parses an authority's `certificate` section: the
// operator's own CA. It returns the authority's name and an identity
// string equal for two entries naming the same roots and identity.
func (p *parser) certificateAuthority(n *yaml.Node, path string, pol *Policy) (*CertificateAuthority, string, string, error) {
	m, err := p.mapping(n, path, "roots", "intermediates", "subject", "subjectRegExp", "issuer", "issuerRegExp", "signingTime")
	if err != nil {
		return nil, "", "", err
	}
	c := &CertificateAuthority{SigningTime: SigningTimeTimestamp}
	v := m.vals["roots"]
	if v == nil {
		return nil, "", "", p.errf(n, join(path, "roots"), "missing; name the CA's root certificate(s) as PEM files, e.g. roots: [ca/root.pem]")
	}
	if c.Roots, err = p.certificateFiles(v, join(path, "roots"), "CA root certificate", c); err != nil {
		return nil, "", "", err
	}
	for i, r := range c.Roots {
		if !r.IsCA || r.CheckSignatureFrom(r) != nil {
			return nil, "", "", p.errf(v, join(path, "roots"), "certificate %d (%s) is not a self-signed CA certificate; list the root here and the CAs below it under intermediates", i+1, r.Subject)
		}
	}
	if v := m.vals["intermediates"]; v != nil {
		if c.Intermediates, err = p.certificateFiles(v, join(path, "intermediates"), "CA intermediate certificate", c); err != nil {
			return nil, "", "", err
		}
		for i, r := range c.Intermediates {
			if !r.IsCA {
				return nil, "", "", p.errf(v, join(path, "intermediates"), "certificate %d (%s) is not a CA certificate; a signing certificate travels with the signature and is never named in the policy", i+1, r.Subject)
			}
		}
	}
	subject, err := p.exactOrRegExp(m, "subject", "the signing certificate's SAN (email, URI or DNS name), e.g. subject: release@example.com")
	if err != nil {
		return nil, "", "", err
	}
	c.Subject = subject
	if c.Issuer, err = p.stringMatch(m, "issuer"); err != nil {
		return nil, "", "", err
	}
	if v := m.vals["signingTime"]; v != nil {
		s, err := p.enum(v, join(path, "signingTime"), string(SigningTimeTimestamp), string(SigningTimeVerification))
		if err != nil {
			return nil, "", "", err
		}
		c.SigningTime = SigningTime(s)
	}
	if c.SigningTime == SigningTimeTimestamp && !pol.HasSigstoreRoots() {
		return nil, "", "", p.errf(n, join(path, "signingTime"), "a certificate is checked at a verified signing time (a TSA timestamp or a transparency-log entry), and the policy names no trustedRoot to verify one with: add trustedRoot (e.g. trustedRoot: {tsa: [roots/tsa-chain.pem]}), or write signingTime: verificationTime to check the certificate at the time of verification")
	}
	h := sha256.New()
	for _, r := range c.Roots {
		h.Write(r.Raw)
	}
	name := c.Files[0] + " " + written(subject)
	if !c.Issuer.IsZero() {
		name += " issuer=" + written(c.Issuer)
	}
	id := hex.EncodeToString(h.Sum(nil)) + "\x00" + matchID(subject) + "\x00" + matchID(c.Issuer)
	return c, name, id, nil
}

// certificateFiles reads a path or a list of paths of PEM files holding
// certificates only.
func (p *parser) certificateFiles(n *yaml.Node, path, what string, c *CertificateAuthority) ([]*x509.Certificate, error) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		var err error
		if items, err = p.nonEmptyList(n, path, what+" file"); err != nil {
			return nil, err
		}
	}
	var out []*x509.Certificate
	for i, item := range items {
		ipath := path
		if n.Kind == yaml.SequenceNode {
			ipath = index(path, i)
		}
		rel, err := p.str(item, ipath)
		if err != nil {
			return nil, err
		}
		file := p.resolve(rel)
		data, err := p.read(item, ipath, what, file, maxRootSize)
		if err != nil {
			return nil, err
		}
		certs, err := parseCertificates(data)
		if err != nil {
			return nil, p.errf(item, ipath, "%s file %s: %v", what, file, err)
		}
		out = append(out, certs...)
		c.Files = append(c.Files, rel)
	}
	return out, nil
}

// parseCertificates reads one or more PEM CERTIFICATE blocks and nothing
// else.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		switch {
		case b == nil:
			return nil, fmt.Errorf("trailing data after certificate %d; expected PEM CERTIFICATE blocks only", len(out))
		case b.Type != "CERTIFICATE":
			return nil, fmt.Errorf("holds a %s block; expected PEM CERTIFICATE blocks only", b.Type)
		case len(out) == maxCertificates:
			return nil, fmt.Errorf("more than %d certificates", maxCertificates)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM CERTIFICATE block")
	}
	return out, nil
}
