package verify

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sealgate/sealgate/plugin/policy"
)

// signed is one signature in any of the forms sealgate reads (a classic
// .sig layer, a .att envelope, a Sigstore bundle), made ready for
// sigstore-go, with what is known about it before anything is verified.
type signed struct {
	entity verify.SignedEntity
	// artifact binds the signature to what is verified (the payload, the
	// image digest, a blob); a fresh option per verification, since an
	// option may consume a reader.
	artifact func() verify.ArtifactPolicyOption
	cert     bool  // signed with a certificate
	certErr  error // the certificate annotations did not parse
	// annotationErr: the Rekor bundle or timestamp annotation did not
	// parse; it fails every authority that needs the log or a time.
	annotationErr error
	entries       []*tlog.Entry
	stamps        int
	// classic is set for a signature over a simple-signing payload: key
	// authorities check sig over payload directly (several schemes per
	// key), then its log entry with sigstore-go.
	classic      *entity
	sig, payload []byte
	// keyless caches the certificate verification, which does not depend
	// on the identity: [0] with the log optional, [1] required.
	keyless [4]*keylessOutcome
}

// signer is who a signature verified for: the key, or the certificate's
// identity, and the verified signing time.
type signer struct {
	id       string // equal for the same signer: a threshold counts it once
	keyID    string
	issuer   string
	subject  string
	signedAt time.Time
	// validUntil: accepted at verification time, valid until then.
	validUntil time.Time
}

type keylessOutcome struct {
	summary  certificate.Summary
	signedAt time.Time
	err      error
}

// tlogRequired is whether a's signatures need a verified transparency-log
// entry: transparencyLog required, a key authority with its own rekorKey,
// and by default a keyless authority. An unknown value is required (fail
// closed).
func tlogRequired(a *policy.Authority) bool {
	if a.Key != nil && a.Key.Rekor != nil {
		return true
	}
	switch a.TransparencyLog {
	case policy.TlogOptional:
		return false
	case "":
		return a.Keyless != nil
	}
	return true
}

// verifyWith checks s against one authority.
func (v *Verifier) verifyWith(s *signed, a *policy.Authority, name string) (signer, error) {
	switch {
	case s.artifact == nil:
		return signer{}, reasonf(ErrBadSignature, "nothing to verify the signature against")
	case a == nil:
		return signer{}, reasonf(ErrUnsupported, "empty authority")
	case (a.Key != nil && a.Keyless != nil) || (a.Certificate != nil && (a.Key != nil || a.Keyless != nil)):
		return signer{}, reasonf(ErrUnsupported, "authority has more than one of key, keyless and certificate")
	case a.Certificate != nil:
		return v.verifyCertificate(s, a)
	case a.Keyless != nil:
		return v.verifyKeyless(s, a)
	case a.Key != nil:
		return v.verifyKey(s, a, name)
	}
	return signer{}, reasonf(ErrUnsupported, "authority has none of key, keyless and certificate")
}

// verifyKey checks s against a key authority.
func (v *Verifier) verifyKey(s *signed, a *policy.Authority, name string) (signer, error) {
	k := v.keys.get(a.Key)
	if k.err != nil {
		return signer{}, reasonf(ErrUnsupported, k.err.Error())
	}
	required := tlogRequired(a)
	if required && s.annotationErr != nil {
		return signer{}, s.annotationErr
	}
	logs := v.mat.rekor
	if k.rekor != nil {
		logs = k.rekor
	}
	tm := withRekor{TrustedMaterial: v.mat, logs: logs}
	if s.classic != nil {
		if len(s.sig) == 0 {
			return signer{}, errNoSignatureBytes
		}
		if !k.verify(s.sig, s.payload) {
			return signer{}, &keyMismatch{name: name}
		}
		at, err := v.classicKeyLog(s, k, tm, required)
		if err != nil {
			return signer{}, err
		}
		return signer{id: k.id, keyID: k.id, signedAt: at}, nil
	}
	if s.cert {
		return signer{}, reasonf(ErrBadSignature, "signed with a certificate, not with the authority's key")
	}
	var opts []verify.VerifierOption
	known := knownEntries(s.entries, logs)
	switch {
	case required && len(s.entries) == 0:
		return signer{}, errNoTlogEntry
	case required && known == 0:
		return signer{}, unknownLogErr(s.entries, logs)
	case known > 0 && (hasPromise(s.entries) || s.stamps > 0):
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	case known > 0:
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
	case s.stamps > 0 && len(v.mat.tsas) > 0:
		opts = append(opts, verify.WithObserverTimestamps(1))
	default:
		// A key needs no time: with no log entry to check (or none the
		// trust store knows, and none required), the signature alone is
		// the proof, as sigstore-go intends for keys.
		opts = append(opts, verify.WithNoObserverTimestamps())
	}
	opts = append(opts, verify.WithoutStatementPredicate())
	sv, err := verify.NewVerifier(root.TrustedMaterialCollection{tm, k.material}, opts...)
	if err != nil {
		return signer{}, reasonf(ErrUnsupported, "verifier: "+err.Error())
	}
	ent := s.entity
	if e, ok := ent.(*entity); ok {
		ent = e.withKey(k.id, k.pub)
	}
	res, err := sv.Verify(ent, verify.NewPolicy(s.artifact(), verify.WithKey()))
	if err != nil {
		return signer{}, classify(err)
	}
	return signer{id: k.id, keyID: k.id, signedAt: signingTime(res.VerifiedTimestamps)}, nil
}

// classicKeyLog checks a classic key signature's log entry and timestamp,
// when required or present (and verifiable): the entry must verify against
// a Rekor key of the trust store (or the authority's rekorKey) and be about
// this signature, payload and key.
func (v *Verifier) classicKeyLog(s *signed, k *key, tm root.TrustedMaterial, required bool) (time.Time, error) {
	logs := tm.RekorLogs()
	known := knownEntries(s.entries, logs)
	switch {
	case required && len(s.entries) == 0:
		return time.Time{}, errNoTlogEntry
	case required && known == 0:
		return time.Time{}, unknownLogErr(s.entries, logs)
	}
	e := s.classic.withKey(k.id, k.pub)
	var at time.Time
	if known > 0 {
		ts, err := verify.VerifyTlogEntry(e, tm, 1, true)
		if err != nil {
			return time.Time{}, classify(fmt.Errorf("failed to verify log inclusion: %w", err))
		}
		for _, t := range ts {
			at = earliest(at, t.Time)
		}
	}
	if s.stamps > 0 && len(v.mat.tsas) > 0 {
		ts, errs, err := verify.VerifySignedTimestamp(e, tm)
		if err == nil && len(ts) == 0 && len(errs) > 0 {
			err = errs[0]
		}
		if err != nil {
			return time.Time{}, reasonf(ErrTimestamp, "the TSA timestamp does not verify against the trusted root ("+truncate(err.Error(), 200)+")")
		}
		for _, t := range ts {
			at = earliest(at, t.Time)
		}
	}
	return at, nil
}

// verifyKeyless checks s against a keyless authority: the certificate
// verification once per log mode, then the identity.
func (v *Verifier) verifyKeyless(s *signed, a *policy.Authority) (signer, error) {
	if len(v.mat.cas) == 0 {
		return signer{}, reasonf(ErrUnsupported, "no trusted root with a Fulcio CA is loaded; keyless authorities need trustedRoot")
	}
	if !s.cert {
		if s.certErr != nil {
			return signer{}, reasonf(ErrCertificate, s.certErr.Error())
		}
		if s.classic != nil {
			return signer{}, reasonf(ErrCertificate, "no certificate (the dev.sigstore.cosign/certificate annotation is missing)")
		}
		return signer{}, reasonf(ErrCertificate, "signed with a key, not a certificate")
	}
	if s.annotationErr != nil {
		return signer{}, s.annotationErr
	}
	out := v.keylessVerify(s, tlogRequired(a), a.SkipSCT)
	if out.err != nil {
		return signer{}, out.err
	}
	if err := matchIdentity(a.Keyless, out.summary); err != nil {
		return signer{}, err
	}
	return signer{
		id:       "keyless\x00" + out.summary.Issuer + "\x00" + out.summary.SubjectAlternativeName,
		issuer:   out.summary.Issuer,
		subject:  out.summary.SubjectAlternativeName,
		signedAt: out.signedAt,
	}, nil
}

// keylessVerify verifies s's certificate, signature, log entry and
// timestamps with sigstore-go, without the identity, caching the outcome
// per log mode and SCT requirement (skipSCT: the authority's ctlog: skip). Time comes only from a verified log entry (signed entry
// timestamp) or TSA timestamp, never from the clock.
func (v *Verifier) keylessVerify(s *signed, required, skipSCT bool) *keylessOutcome {
	idx := 0
	if required {
		idx = 1
	}
	if skipSCT {
		idx += 2
	}
	if s.keyless[idx] != nil {
		return s.keyless[idx]
	}
	out := &keylessOutcome{}
	s.keyless[idx] = out
	var opts []verify.VerifierOption
	known := knownEntries(s.entries, v.mat.rekor)
	switch {
	case required && len(s.entries) == 0:
		out.err = errNoTlogEntry
		return out
	case required && known == 0:
		out.err = unknownLogErr(s.entries, v.mat.rekor)
		return out
	case known > 0:
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	case s.stamps > 0:
		opts = append(opts, verify.WithSignedTimestamps(1))
	default:
		out.err = reasonf(ErrTimestamp, "no verified signing time: the signature has neither a transparency-log entry from a log of the trusted root nor a TSA timestamp, and a certificate is only checked at a verified time")
		return out
	}
	if len(v.mat.ct) > 0 && !skipSCT {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	opts = append(opts, verify.WithoutStatementPredicate())
	sv, err := verify.NewVerifier(v.mat, opts...)
	if err != nil {
		out.err = reasonf(ErrUnsupported, "verifier: "+err.Error())
		return out
	}
	res, err := sv.Verify(s.entity, verify.NewPolicy(s.artifact(), verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		out.err = classify(err)
		return out
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		out.err = reasonf(ErrCertificate, "not signed with a certificate")
		return out
	}
	out.summary = *res.Signature.Certificate
	out.signedAt = signingTime(res.VerifiedTimestamps)
	return out
}

// matchIdentity checks a verified certificate against a keyless
// authority: issuer and subject with sigstore-go's matcher (exact, or the
// policy's regular expression, unanchored as written), then the Fulcio
// extensions the authority constrains.
func matchIdentity(k *policy.KeylessAuthority, s certificate.Summary) error {
	id := verify.CertificateIdentity{
		SubjectAlternativeName: verify.SubjectAlternativeNameMatcher{SubjectAlternativeName: k.Subject},
		Issuer:                 verify.IssuerMatcher{Issuer: k.Issuer},
	}
	if k.SubjectRegExp != nil {
		id.SubjectAlternativeName.Regexp = *k.SubjectRegExp
	}
	if k.IssuerRegExp != nil {
		id.Issuer.Regexp = *k.IssuerRegExp
	}
	if err := id.Verify(s); err != nil {
		return reasonf(ErrIdentityMismatch, "certificate identity: "+truncate(err.Error(), 400))
	}
	for _, ext := range []struct {
		name string
		want policy.StringMatch
		got  string
	}{
		{"source repository URI", k.SourceRepositoryURI, s.SourceRepositoryURI},
		{"source repository ref", k.SourceRepositoryRef, s.SourceRepositoryRef},
		{"build signer URI", k.BuildSignerURI, s.BuildSignerURI},
		{"GitHub workflow repository", k.GitHubWorkflowRepository, s.GithubWorkflowRepository},
		{"GitHub workflow ref", k.GitHubWorkflowRef, s.GithubWorkflowRef},
	} {
		if !ext.want.IsZero() && !ext.want.Match(ext.got) {
			return reasonf(ErrIdentityMismatch, fmt.Sprintf("certificate %s %q does not match %s", ext.name, truncate(ext.got, 200), ext.want))
		}
	}
	return nil
}

var errNoTlogEntry = reasonf(ErrTransparencyLog, "no transparency-log entry, and the authority requires one (transparencyLog: required)")

// knownEntries counts the entries whose log is in logs.
func knownEntries(entries []*tlog.Entry, logs map[string]*root.TransparencyLog) int {
	n := 0
	for _, e := range entries {
		if _, ok := logs[hex.EncodeToString([]byte(e.LogKeyID()))]; ok {
			n++
		}
	}
	return n
}

func hasPromise(entries []*tlog.Entry) bool {
	for _, e := range entries {
		if e.HasInclusionPromise() {
			return true
		}
	}
	return false
}

func unknownLogErr(entries []*tlog.Entry, logs map[string]*root.TransparencyLog) error {
	if len(logs) == 0 {
		return reasonf(ErrTransparencyLog, "no Rekor key to verify the transparency-log entry with: name a trustedRoot (or a rekorKey for a key authority)")
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, truncate(hex.EncodeToString([]byte(e.LogKeyID())), 64))
	}
	sort.Strings(ids)
	return reasonf(ErrTransparencyLog, "the transparency-log entry is from a log the trust store does not know (log ID "+strings.Join(ids, ", ")+")")
}

// signingTime is the earliest verified observer time (log integrated time
// or TSA time); zero when there is none.
func signingTime(ts []verify.TimestampVerificationResult) time.Time {
	var at time.Time
	for _, t := range ts {
		if t.Type == "Tlog" || t.Type == "TimestampAuthority" {
			at = earliest(at, t.Timestamp)
		}
	}
	return at
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b.UTC()
	}
	return a
}

// sigstoreErrors maps what sigstore-go's verifier reports to the class and
// the operator-facing reason, most specific first. sigstore-go has no
// sentinels for these; the texts are pinned by this package's tests.
var sigstoreErrors = []struct {
	substr string
	kind   error
	msg    string
}{
	{"transparency log signature does not match", ErrTransparencyLog, "the transparency-log entry is about another signature"},
	{"transparency log certificate does not match", ErrTransparencyLog, "the transparency-log entry names another certificate or key"},
	{"entry digest", ErrTransparencyLog, "the transparency-log entry is about another payload"},
	{"entry payload hash", ErrTransparencyLog, "the transparency-log entry is about another payload"},
	{"is not a hashedrekord", ErrTransparencyLog, "the transparency-log entry is of another kind than the signature"},
	{"is not a dsse_v001 or intoto_v002", ErrTransparencyLog, "the transparency-log entry is of another kind than the signature"},
	{"integrated time outside certificate validity", ErrCertificate, "the certificate was not valid at the signing time recorded by the log (expired or not yet valid)"},
	{"not enough verified log entries", ErrTransparencyLog, "no transparency-log entry verifies against the Rekor keys of the trust store (altered entry, or signed entry timestamp not by a trusted log)"},
	{"duplicate tlog entries", ErrTransparencyLog, "duplicate transparency-log entries"},
	{"failed to verify log inclusion", ErrTransparencyLog, "the transparency-log entry does not verify"},
	{"failed to verify timestamps", ErrTimestamp, "no verified signing time (a log entry with a signed entry timestamp, or a TSA timestamp of the trusted root)"},
	{"failed to verify leaf certificate", ErrCertificate, "the certificate does not chain to a Fulcio CA of the trusted root valid at the signing time"},
	{"failed to verify signed certificate timestamp", ErrCertificate, "the certificate has no valid SCT from a CT log of the trusted root"},
	{"failed to summarize certificate", ErrCertificate, "the certificate is not a Fulcio signing certificate"},
	{"does not match any digest in statement", ErrDigestMismatch, "the statement's subject is not the artifact"},
	{"does not match digests in statement", ErrDigestMismatch, "the statement's subject is not the artifact"},
	{"artifact does not match digest", ErrDigestMismatch, "the signature is over another artifact"},
	{"artifact digest does not match message digest", ErrDigestMismatch, "the signature is over another artifact"},
	{"expected key signature, not certificate", ErrBadSignature, "signed with a certificate, not with the authority's key"},
	{"outside of public key validity window", ErrBadSignature, "signed outside the key's validity"},
	{"failed to verify signature", ErrBadSignature, "the signature does not verify"},
	{"failed to get signature verifier", ErrBadSignature, "the signature does not verify"},
}

// classify turns a sigstore-go verification error into a reason: ours,
// then sigstore-go's own words for the detail.
func classify(err error) error {
	raw := err.Error()
	for _, m := range sigstoreErrors {
		if strings.Contains(raw, m.substr) {
			return reasonf(m.kind, m.msg+" ("+truncate(raw, 240)+")")
		}
	}
	return reasonf(ErrBadSignature, "verification failed ("+truncate(raw, 240)+")")
}
