package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// VerifyAttestations checks an image's attestations against one
// requirement of a rule: cosign's .att envelopes (atts) and the DSSE
// bundles among bundles. The requirement is satisfied by a statement whose
// predicate type is exactly req.PredicateType, some of whose subjects has
// the image's digest, whose envelope verifies for one of req.Authorities,
// and for which every condition of req evaluates to true. By lists each
// authority that verified such an attestation (signers counted once).
//
// Attestations of other predicate types are not verified; the summary
// reason counts them, so that an operator sees what was there. When ctx is
// done the remaining attestations are skipped and a reason says so.
//
// A TSA timestamp annotation on a .att layer is not used: cosign stamps
// the envelope there, not the signature, which sigstore-go's timestamp
// check is about; a keyless .att therefore needs its log entry.
func (v *Verifier) VerifyAttestations(ctx context.Context, subject Subject, atts []artifact.Attestation, bundles []artifact.Bundle, req *policy.Attestation) Result {
	var res Result
	switch {
	case req == nil:
		res.Reasons = []string{"the rule has no attestation requirement to verify against"}
		return res
	case req.PredicateType == "":
		res.Reasons = []string{"the attestation requirement names no predicate type"}
		return res
	case len(req.Authorities) == 0:
		res.Reasons = []string{"the attestation requirement lists no authorities"}
		return res
	case !ValidDigest(subject.Digest):
		res.Reasons = []string{fmt.Sprintf("image digest %q is not a sha256 or sha512 digest", truncate(subject.Digest, 80))}
		return res
	}
	t := newTally(len(req.Authorities))
	others := map[string]int{}
	found := 0
	stop := newStopper(ctx, len(atts)+len(bundles), &res)
	for i, att := range atts {
		if stop.at("attestation", i, len(atts)) {
			break
		}
		label := attLabel(i, att.Origin)
		s, st, err := attestationSigned(att)
		if err != nil {
			res.Reasons = append(res.Reasons, label+": "+err.Error())
			continue
		}
		if st.PredicateType != req.PredicateType {
			others[st.PredicateType]++
			continue
		}
		found++
		if err := v.checkAttestation(ctx, s, st, subject, req, t, att.Origin); err != nil {
			res.Reasons = append(res.Reasons, label+": "+err.Error())
		}
	}
	if !stop.halted {
		for i, b := range bundles {
			if stop.at("bundle", i, len(bundles)) {
				break
			}
			label := bundleLabel(i, b.Origin)
			err := checkBundleMediaType(b.MediaType)
			var pb *parsedBundle
			if err == nil {
				pb, err = parseBundle(b.JSON)
			}
			if err != nil {
				res.Reasons = append(res.Reasons, label+": "+err.Error())
				continue
			}
			if pb.statement == nil {
				continue // a message signature: not an attestation
			}
			if pb.statement.PredicateType != req.PredicateType {
				if pb.statement.PredicateType != CosignSignPredicateType {
					others[pb.statement.PredicateType]++
				}
				continue
			}
			found++
			s := bundleSigned(pb)
			if err := v.checkAttestation(ctx, s, pb.statement, subject, req, t, b.Origin); err != nil {
				res.Reasons = append(res.Reasons, label+": "+err.Error())
			}
		}
	}
	res.By = t.satisfiers(req.Authorities, subject.Digest)
	res.Satisfied = len(res.By) > 0
	if !res.Satisfied {
		msg := fmt.Sprintf("no attestation of type %s verified", req.PredicateType)
		if found == 0 {
			msg = fmt.Sprintf("no attestation of type %s found", req.PredicateType)
		}
		if len(others) > 0 {
			msg += " (found other types: " + describeTypes(others) + ")"
		}
		res.Reasons = append(res.Reasons, msg)
	}
	return res
}

// checkAttestation checks one statement of the required type: its subject,
// its signature for each authority, then the conditions (evaluated only on
// a statement whose signature verified).
func (v *Verifier) checkAttestation(ctx context.Context, s *signed, st *Statement, subject Subject, req *policy.Attestation, t *tally, origin string) error {
	if err := checkStatementSubject(st, subject.Digest); err != nil {
		return err
	}
	s.artifact = digestArtifact(subject.Digest)
	matched, err := v.evaluate(s, req.Authorities)
	if err != nil {
		return err
	}
	for _, c := range req.Conditions {
		ok, err := c.Eval(ctx, st.JSON)
		if err != nil {
			return reasonf(ErrConditionNotMet, "condition not evaluated: "+truncate(err.Error(), 400))
		}
		if !ok {
			return reasonf(ErrConditionNotMet, "condition is false: "+describeCondition(c))
		}
	}
	t.add(matched, KindAttestation, st.PredicateType, origin)
	return nil
}

// attestationSigned prepares a .att layer: its envelope and statement,
// parsed strictly, and the certificate and Rekor bundle annotations.
func attestationSigned(att artifact.Attestation) (*signed, *Statement, error) {
	env, err := ParseEnvelope(att.Envelope)
	if err != nil {
		return nil, nil, err
	}
	st, err := envelopeStatement(env)
	if err != nil {
		return nil, nil, err
	}
	ent := &entity{content: envelopeContent(env)}
	s := &signed{entity: ent}
	ent.entries, s.annotationErr = annotationEntries(att.RekorBundle)
	s.entries = ent.entries
	s.certErr = attachCertificate(ent, att.Certificate, att.Chain)
	s.cert = ent.vc != nil
	return s, st, nil
}

func describeCondition(c *policy.Condition) string {
	if c == nil {
		return "(nil)"
	}
	expr := truncate(c.Expr, 120)
	if c.Line > 0 {
		return fmt.Sprintf("%q (policy line %d)", expr, c.Line)
	}
	return fmt.Sprintf("%q", expr)
}

func describeTypes(m map[string]int) string {
	types := make([]string, 0, len(m))
	for t := range m {
		types = append(types, t)
	}
	sort.Strings(types)
	const shown = 5
	var parts []string
	for i, t := range types {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(types)-shown))
			break
		}
		p := truncate(t, 120)
		if m[t] > 1 {
			p += fmt.Sprintf(" ×%d", m[t])
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func attLabel(i int, origin string) string {
	if origin == "" {
		return fmt.Sprintf("attestation %d", i)
	}
	return fmt.Sprintf("attestation %d (%s)", i, origin)
}
