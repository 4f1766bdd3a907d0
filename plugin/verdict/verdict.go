// Package verdict holds what a verdict records about how it was reached,
// shared by the verifier that produces it and the verdict cache that keeps
// it, without either depending on the other.
package verdict

import "time"

// Satisfier records which authority, with which key or certificate
// identity, vouched for which digest and when, so that a verdict can be
// audited after the fact.
type Satisfier struct {
	// Authority is policy.Authority.Name.
	Authority string `json:"authority"`
	// KeyID is "sha256:<hex>" of the DER SubjectPublicKeyInfo of the key
	// that verified (key authorities).
	KeyID string `json:"keyID,omitempty"`
	// Issuer and Subject are the OIDC issuer and the subject (SAN) of the
	// verified certificate (keyless authorities).
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	// SignedAt is the verified signing time: the transparency log's
	// integrated time or the TSA's time; zero when there is none (a key
	// signature without log entry).
	SignedAt time.Time `json:"signedAt,omitzero"`
	// ValidUntil is set when the signature was accepted on the
	// certificate's validity at the time of verification, with no verified
	// signing time (a certificate authority's signingTime:
	// verificationTime): the certificate's expiry, after which the verdict
	// no longer holds. Such a verdict is not persisted, so it never serves
	// offline.
	ValidUntil time.Time `json:"validUntil,omitzero"`
	// Kind is verify.KindCosignSignature, KindBundle or KindAttestation.
	Kind string `json:"kind,omitempty"`
	// PredicateType is the statement's predicate type, for attestations
	// and DSSE bundles.
	PredicateType string `json:"predicateType,omitempty"`
	// Digest is the digest the signed payload names.
	Digest string `json:"digest,omitempty"`
	// Origin says where the material was found (the tag or referrer, and
	// the mirror that served it), as the source reported it. Not
	// persisted with cached verdicts.
	Origin string `json:"origin,omitempty"`
	// Requirement names the rule's requirement this satisfied, for
	// callers that report several requirements together (the decision
	// engine sets it; this package leaves it empty).
	Requirement string `json:"requirement,omitempty"`
}
