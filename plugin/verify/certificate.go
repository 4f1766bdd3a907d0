package verify

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sealgate/sealgate/plugin/policy"
)

// caMaterial is the trusted material of a certificate authority: its own
// roots and intermediates as the only certificate authorities (so that no
// Fulcio CA of the trusted roots can stand in for it, nor it for them), no
// CT logs, and the TSAs and Rekor logs of the trusted roots for the
// signing time.
type caMaterial struct {
	root.BaseTrustedMaterial
	cas   []root.CertificateAuthority
	tsas  []root.TimestampingAuthority
	rekor map[string]*root.TransparencyLog
}

var _ root.TrustedMaterial = (*caMaterial)(nil)

func (m *caMaterial) FulcioCertificateAuthorities() []root.CertificateAuthority { return m.cas }
func (m *caMaterial) TimestampingAuthorities() []root.TimestampingAuthority     { return m.tsas }
func (m *caMaterial) RekorLogs() map[string]*root.TransparencyLog               { return m.rekor }

func (v *Verifier) caMaterial(c *policy.CertificateAuthority) *caMaterial {
	m := &caMaterial{tsas: v.mat.tsas, rekor: v.mat.rekor}
	for _, r := range c.Roots {
		m.cas = append(m.cas, &root.FulcioCertificateAuthority{Root: r, Intermediates: c.Intermediates, ValidityPeriodStart: unboundedStart})
	}
	return m
}

// verifyCertificate checks s against the operator's own CA: the
// certificate chains to the authority's roots at a verified signing time
// (a transparency-log entry or TSA timestamp of the trusted roots) or,
// only when the authority says signingTime: verificationTime and the
// signature carries no such time, now; then its SANs and issuer extension
// are matched.
func (v *Verifier) verifyCertificate(s *signed, a *policy.Authority) (signer, error) {
	c := a.Certificate
	if !s.cert {
		if s.certErr != nil {
			return signer{}, reasonf(ErrCertificate, s.certErr.Error())
		}
		return signer{}, reasonf(ErrCertificate, "signed with a key, not a certificate")
	}
	if s.annotationErr != nil {
		return signer{}, s.annotationErr
	}
	required := tlogRequired(a)
	var opts []verify.VerifierOption
	now := false
	known := knownEntries(s.entries, v.mat.rekor)
	switch {
	case required && len(s.entries) == 0:
		return signer{}, errNoTlogEntry
	case required && known == 0:
		return signer{}, unknownLogErr(s.entries, v.mat.rekor)
	case known > 0:
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	case s.stamps > 0 && len(v.mat.tsas) > 0:
		opts = append(opts, verify.WithSignedTimestamps(1))
	case c.SigningTime == policy.SigningTimeVerification:
		opts, now = append(opts, verify.WithCurrentTime()), true
	default:
		return signer{}, reasonf(ErrTimestamp, "no verified signing time: the signature has neither a TSA timestamp of a TSA in trustedRoot nor a transparency-log entry of a log in trustedRoot; to accept certificates valid at the time of verification, write signingTime: verificationTime on the authority")
	}
	opts = append(opts, verify.WithoutStatementPredicate())
	sv, err := verify.NewVerifier(v.caMaterial(c), opts...)
	if err != nil {
		return signer{}, reasonf(ErrUnsupported, "verifier: "+err.Error())
	}
	res, err := sv.Verify(s.entity, verify.NewPolicy(s.artifact(), verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return signer{}, classifyCA(err, now)
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return signer{}, reasonf(ErrCertificate, "not signed with a certificate")
	}
	vc, err := s.entity.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return signer{}, reasonf(ErrCertificate, "not signed with a certificate")
	}
	cert := vc.Certificate()
	subject, err := matchCertificate(c, cert, res.Signature.Certificate.Issuer)
	if err != nil {
		return signer{}, err
	}
	who := signer{
		id:       "certificate\x00" + res.Signature.Certificate.Issuer + "\x00" + strings.Join(sans(cert), "\x00"),
		issuer:   res.Signature.Certificate.Issuer,
		subject:  subject,
		signedAt: signingTime(res.VerifiedTimestamps),
	}
	if now {
		who.signedAt, who.validUntil = time.Time{}, cert.NotAfter.UTC()
	}
	return who, nil
}

// matchCertificate checks the certificate's SANs against the authority's
// subject (any SAN may match) and, when the authority names one, its
// issuer extension; it returns the SAN that matched.
func matchCertificate(c *policy.CertificateAuthority, cert *x509.Certificate, issuer string) (string, error) {
	all := sans(cert)
	subject := ""
	for _, s := range all {
		if c.Subject.Match(s) {
			subject = s
			break
		}
	}
	if subject == "" {
		return "", reasonf(ErrIdentityMismatch, fmt.Sprintf("no SAN of the certificate (%s) matches subject %s", truncate(strings.Join(all, ", "), 300), c.Subject))
	}
	if !c.Issuer.IsZero() {
		// A certificate without the extension is compared as empty text,
		// as for keyless authorities and cosign: an exact value never
		// matches it.
		if issuer == "" && !c.Issuer.Match("") {
			return "", reasonf(ErrIdentityMismatch, "the certificate has no OIDC issuer extension, and the authority asks for issuer "+c.Issuer.String())
		}
		if !c.Issuer.Match(issuer) {
			return "", reasonf(ErrIdentityMismatch, fmt.Sprintf("certificate issuer %q does not match %s", truncate(issuer, 200), c.Issuer))
		}
	}
	return subject, nil
}

// sans are the certificate's email, URI and DNS SANs, sorted.
func sans(cert *x509.Certificate) []string {
	var out []string
	out = append(out, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		out = append(out, u.String())
	}
	out = append(out, cert.DNSNames...)
	sort.Strings(out)
	return out
}

// classifyCA words sigstore-go's errors for a certificate authority: the
// certificate chains to the authority's CA, not to Fulcio.
func classifyCA(err error, now bool) error {
	raw := err.Error()
	switch {
	case strings.Contains(raw, "failed to verify leaf certificate") && now:
		return reasonf(ErrCertificate, "the certificate does not chain to the authority's CA (roots and intermediates of the policy), lacks the code-signing usage, or is not valid now ("+truncate(raw, 240)+")")
	case strings.Contains(raw, "failed to verify leaf certificate"):
		return reasonf(ErrCertificate, "the certificate does not chain to the authority's CA (roots and intermediates of the policy), lacks the code-signing usage, or was not valid at the signing time ("+truncate(raw, 240)+")")
	case strings.Contains(raw, "failed to summarize certificate"):
		return reasonf(ErrCertificate, "the certificate has no email or URI SAN ("+truncate(raw, 240)+")")
	}
	return classify(err)
}
