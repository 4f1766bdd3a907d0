package testenv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	ctx509util "github.com/google/certificate-transparency-go/x509util"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/tle"
	rekortypes "github.com/sigstore/rekor/pkg/types"
	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1" // registers the dsse entry kind
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1" // registers the hashedrekord entry kind
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Sigstore is a Sigstore deployment in memory, offline, for keyless tests:
// a Fulcio CA that issues certificates as Fulcio does (identity, issuer and
// build extensions, an embedded SCT from its CT log), and sigstore-go's
// VirtualSigstore (pkg/testing/ca) as the Rekor log and the timestamp
// authority. Its trusted root is written out as trusted_root.json files, so
// that tests load it as the daemon loads the operator's, and signatures are
// packaged exactly as cosign packages them (classic .sig layers, Sigstore
// bundles), so that they can be pushed to a Registry and travel the real
// path. sigstore-go's own Fulcio in VirtualSigstore issues certificates
// without SCTs or build extensions, which is why the CA is made here.
//
// Everything is valid around Now: the Fulcio CA and the logs for an hour
// either side, the default certificate for ten minutes. Log entries are
// integrated at Now, so a verifier that takes the signing time from the log
// (as it must) accepts them however long the tests run.
type Sigstore struct {
	// RootFile is a trusted_root.json with the Fulcio CA, the Rekor log,
	// the CT log and the TSA.
	RootFile string
	// NoCTRootFile is the same root without the CT log: certificates
	// without an SCT verify against it.
	NoCTRootFile string
	// Now is when the deployment was made; log entries are integrated then.
	Now time.Time
	// Virtual is the Rekor log and the TSA.
	Virtual *ca.VirtualSigstore
	// Fulcio is the Fulcio CA of both roots: a root and one intermediate,
	// which issues the certificates.
	Fulcio *root.FulcioCertificateAuthority

	fulcioKey crypto.Signer
	ctKey     *ecdsa.PrivateKey
	ctID      [32]byte
	rekorID   []byte
}

// StartSigstore makes a Sigstore deployment and writes its trusted roots
// into dir.
func StartSigstore(dir string) (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	s := &Sigstore{Virtual: vs, Now: time.Now()}
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	s.fulcioKey = interKey
	s.Fulcio = &root.FulcioCertificateAuthority{
		Root: rootCert, Intermediates: []*x509.Certificate{inter},
		ValidityPeriodStart: s.Now.Add(-time.Hour), ValidityPeriodEnd: s.Now.Add(time.Hour),
		URI: "https://fulcio.test",
	}
	if s.ctKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	ctID, err := logID(s.ctKey.Public())
	if err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	s.ctID = [32]byte(ctID)
	rekorPub := s.RekorPublicKey()
	if s.rekorID, err = logID(rekorPub); err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	rekor := map[string]*root.TransparencyLog{hex.EncodeToString(s.rekorID): {
		BaseURL: "https://rekor.localhost", ID: s.rekorID, ValidityPeriodStart: s.Now.Add(-time.Hour),
		HashFunc: crypto.SHA256, PublicKey: rekorPub, SignatureHashFunc: crypto.SHA256,
	}}
	ctlogs := map[string]*root.TransparencyLog{hex.EncodeToString(ctID): {
		BaseURL: "https://ct.test", ID: ctID, ValidityPeriodStart: s.Now.Add(-time.Hour),
		HashFunc: crypto.SHA256, PublicKey: s.ctKey.Public(), SignatureHashFunc: crypto.SHA256,
	}}
	write := func(name string, ctlogs map[string]*root.TransparencyLog) (string, error) {
		tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{s.Fulcio}, ctlogs, vs.TimestampingAuthorities(), rekor)
		if err != nil {
			return "", err
		}
		b, err := tr.MarshalJSON()
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, b, 0o644)
	}
	if s.RootFile, err = write("trusted_root.json", ctlogs); err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	if s.NoCTRootFile, err = write("trusted_root_no_ct.json", map[string]*root.TransparencyLog{}); err != nil {
		return nil, fmt.Errorf("start sigstore: %w", err)
	}
	return s, nil
}

// NewSigstore makes a Sigstore deployment whose roots live in a temporary
// directory of t.
func NewSigstore(t testing.TB) *Sigstore {
	t.Helper()
	s, err := StartSigstore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logID is the ID of a log: the SHA-256 of its key's DER
// SubjectPublicKeyInfo, as Rekor and CT compute it.
func logID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

// RekorPublicKey is the Rekor log's public key, for a policy's rekorKey.
func (s *Sigstore) RekorPublicKey() crypto.PublicKey {
	for _, l := range s.Virtual.RekorLogs() {
		return l.PublicKey
	}
	return nil
}

// RekorLogID is the Rekor log's ID.
func (s *Sigstore) RekorLogID() []byte { return append([]byte(nil), s.rekorID...) }

// The identity of the certificates DefaultLeaf describes: a GitHub Actions
// release workflow.
const (
	KeylessIssuer        = "https://token.actions.githubusercontent.com"
	KeylessSubject       = "https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.0.0"
	KeylessRepositoryURI = "https://github.com/myorg/app"
	KeylessRef           = "refs/tags/v1.0.0"
	// KeylessGitHubRepository is Fulcio's deprecated GitHub workflow
	// repository extension (1.3.6.1.4.1.57264.1.5): owner/name.
	KeylessGitHubRepository = "myorg/app"
)

// LeafOptions describes a signing certificate.
type LeafOptions struct {
	// Subject is a URI SAN when it contains "://", an email SAN otherwise.
	Subject string
	// Issuer is the OIDC issuer (Fulcio's v2 issuer extension).
	Issuer string
	// Extensions are the Fulcio build extensions; those set here are
	// written: source repository URI and ref, build signer URI, and the
	// deprecated GitHub workflow repository and ref.
	Extensions          certificate.Extensions
	NotBefore, NotAfter time.Time
	// NoSCT leaves the SCT out, as a certificate not logged to CT.
	NoSCT bool
	// CA issues the certificate instead of the root's Fulcio
	// intermediate: a CA the trusted root does not know.
	CA *CA
}

// CA is a certificate authority outside the trusted root.
type CA struct {
	// Root is the self-signed root; Cert, the intermediate under it,
	// issues the certificates.
	Root *x509.Certificate
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a Fulcio-like root and intermediate that no trusted root of
// a Sigstore lists, and returns the intermediate.
func NewCA() (*CA, error) {
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	return &CA{Root: rootCert, Cert: inter, Key: interKey}, nil
}

// DefaultLeaf is a GitHub Actions certificate with the Keyless* identity
// and extensions, valid from a minute before Now for ten minutes.
func (s *Sigstore) DefaultLeaf() LeafOptions {
	return LeafOptions{
		Subject: KeylessSubject, Issuer: KeylessIssuer,
		Extensions: certificate.Extensions{
			SourceRepositoryURI:      KeylessRepositoryURI,
			SourceRepositoryRef:      KeylessRef,
			BuildSignerURI:           KeylessSubject,
			GithubWorkflowRepository: KeylessGitHubRepository,
			GithubWorkflowRef:        KeylessRef,
		},
		NotBefore: s.Now.Add(-time.Minute), NotAfter: s.Now.Add(9 * time.Minute),
	}
}

// Leaf issues a certificate for a new P-256 key as Fulcio does: the SAN,
// the issuer (v2 OID), the build extensions, code signing, and an embedded
// SCT from the Sigstore's CT log over the precertificate.
func (s *Sigstore) Leaf(o LeafOptions) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	parent, parentKey := s.Fulcio.Intermediates[0], s.fulcioKey
	if o.CA != nil {
		parent, parentKey = o.CA.Cert, o.CA.Key
	}
	var exts []pkix.Extension
	for _, e := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{
		{certificate.OIDIssuerV2, o.Issuer},
		{certificate.OIDSourceRepositoryURI, o.Extensions.SourceRepositoryURI},
		{certificate.OIDSourceRepositoryRef, o.Extensions.SourceRepositoryRef},
		{certificate.OIDBuildSignerURI, o.Extensions.BuildSignerURI},
	} {
		if e.v == "" {
			continue
		}
		der, err := asn1.MarshalWithParams(e.v, "utf8")
		if err != nil {
			return nil, nil, fmt.Errorf("leaf certificate: %w", err)
		}
		exts = append(exts, pkix.Extension{Id: e.oid, Value: der})
	}
	// Fulcio still writes the deprecated extensions, raw, beside the new
	// ones; cosign's classic verification reads only those.
	for _, e := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{
		{certificate.OIDIssuer, o.Issuer},
		{certificate.OIDGitHubWorkflowRepository, o.Extensions.GithubWorkflowRepository},
		{certificate.OIDGitHubWorkflowRef, o.Extensions.GithubWorkflowRef},
	} {
		if e.v != "" {
			exts = append(exts, pkix.Extension{Id: e.oid, Value: []byte(e.v)})
		}
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		NotBefore:       o.NotBefore,
		NotAfter:        o.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: exts,
	}
	if strings.Contains(o.Subject, "://") {
		u, err := url.Parse(o.Subject)
		if err != nil {
			return nil, nil, fmt.Errorf("leaf certificate: %w", err)
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{o.Subject}
	}
	create := func() (*x509.Certificate, error) {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	pre, err := create()
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	if o.NoSCT {
		return pre, key, nil
	}
	sct, err := s.sct(pre, parent)
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	tmpl.ExtraExtensions = append(exts, sct)
	cert, err := create()
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	return cert, key, nil
}

// sct is the SCT list extension that the CT log would have signed for pre,
// issued by parent, as Fulcio embeds it.
func (s *Sigstore) sct(pre, parent *x509.Certificate) (pkix.Extension, error) {
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, Timestamp: uint64(pre.NotBefore.UnixMilli()), LogID: ct.LogID{KeyID: s.ctID}}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version: ct.V1, LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp, EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{IssuerKeyHash: sha256.Sum256(parent.RawSubjectPublicKeyInfo), TBSCertificate: pre.RawTBSCertificate},
		},
	}})
	if err != nil {
		return pkix.Extension{}, err
	}
	h := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ctKey, h[:])
	if err != nil {
		return pkix.Extension{}, err
	}
	sct.Signature = ct.DigitallySigned{Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA}, Signature: sig}
	list, err := ctx509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		return pkix.Extension{}, err
	}
	raw, err := cttls.Marshal(*list)
	if err != nil {
		return pkix.Extension{}, err
	}
	val, err := asn1.Marshal(raw)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTSCT), Value: val}, nil
}

func wrapIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Rekor entry kinds that LogEntry makes.
const (
	// RekorHashedRekord is a signature over an artifact's digest: cosign's
	// classic signatures and message-signature bundles.
	RekorHashedRekord = hashedrekord.KIND
	// RekorDSSE is a DSSE envelope: bundles and attestations.
	RekorDSSE = rekordsse.KIND
)

// RekorEntry is a Rekor v1 log entry as the log returns it.
type RekorEntry struct {
	// Body is the canonicalized entry.
	Body           []byte
	IntegratedTime int64
	LogIndex       int64
	LogID          []byte
	// SET is the log's signed entry timestamp over the other fields.
	SET []byte
}

// LogEntry enters a signature into the Rekor log at integrated and returns
// the entry with its signed entry timestamp. kind is RekorHashedRekord
// (artifact: the signed bytes) or RekorDSSE (artifact: the envelope JSON);
// signer is the PEM certificate or public key.
func (s *Sigstore) LogEntry(kind string, artifact, signer, sig []byte, integrated time.Time) (RekorEntry, error) {
	ctx := context.Background()
	props := rekortypes.ArtifactProperties{PublicKeyBytes: [][]byte{signer}, PKIFormat: string(pki.X509), SignatureBytes: sig}
	switch kind {
	case RekorHashedRekord:
		sum := sha256.Sum256(artifact)
		props.ArtifactHash = hex.EncodeToString(sum[:])
	case RekorDSSE:
		props.ArtifactBytes = artifact
	default:
		return RekorEntry{}, fmt.Errorf("log entry: kind %q", kind)
	}
	pe, err := rekortypes.NewProposedEntry(ctx, kind, "0.0.1", props)
	if err != nil {
		return RekorEntry{}, fmt.Errorf("log entry: %w", err)
	}
	impl, err := rekortypes.CreateVersionedEntry(pe)
	if err != nil {
		return RekorEntry{}, fmt.Errorf("log entry: %w", err)
	}
	body, err := rekortypes.CanonicalizeEntry(ctx, impl)
	if err != nil {
		return RekorEntry{}, fmt.Errorf("log entry: %w", err)
	}
	e := RekorEntry{Body: body, IntegratedTime: integrated.Unix(), LogID: s.RekorLogID()}
	return e, s.SignEntry(&e)
}

// SignEntry makes e's signed entry timestamp anew with the log's key, as
// the log would have signed an entry with e's fields: a test that changes
// a field and calls it forges what only the log could make.
func (s *Sigstore) SignEntry(e *RekorEntry) error {
	set, err := s.Virtual.RekorSignPayload(tlog.RekorPayload{
		Body: base64.StdEncoding.EncodeToString(e.Body), IntegratedTime: e.IntegratedTime,
		LogIndex: e.LogIndex, LogID: hex.EncodeToString(e.LogID),
	})
	if err != nil {
		return fmt.Errorf("sign log entry: %w", err)
	}
	e.SET = set
	return nil
}

// Annotation is e as cosign's dev.sigstore.cosign/bundle annotation.
func (e RekorEntry) Annotation() ([]byte, error) {
	return json.Marshal(map[string]any{
		"SignedEntryTimestamp": e.SET,
		"Payload": map[string]any{
			"body": base64.StdEncoding.EncodeToString(e.Body), "integratedTime": e.IntegratedTime,
			"logIndex": e.LogIndex, "logID": hex.EncodeToString(e.LogID),
		},
	})
}

// TransparencyLogEntry is e as a bundle's transparency-log entry, made the
// way cosign makes it (rekor's tle package) with its inclusion promise and,
// when withProof, the log's inclusion proof (bundles from v0.2 on need it).
func (s *Sigstore) TransparencyLogEntry(e RekorEntry, withProof bool) (*protorekor.TransparencyLogEntry, error) {
	proof, err := s.Virtual.GetInclusionProof(e.Body)
	if err != nil {
		return nil, fmt.Errorf("transparency-log entry: %w", err)
	}
	id := hex.EncodeToString(e.LogID)
	tl, err := tle.GenerateTransparencyLogEntry(models.LogEntryAnon{
		Body: base64.StdEncoding.EncodeToString(e.Body), IntegratedTime: &e.IntegratedTime,
		LogIndex: &e.LogIndex, LogID: &id,
		Verification: &models.LogEntryAnonVerification{InclusionProof: proof, SignedEntryTimestamp: e.SET},
	})
	if err != nil {
		return nil, fmt.Errorf("transparency-log entry: %w", err)
	}
	if !withProof {
		tl.InclusionProof = nil
	}
	return tl, nil
}

// Timestamp is the TSA's RFC 3161 timestamp response over sig.
func (s *Sigstore) Timestamp(sig []byte) ([]byte, error) {
	r, err := s.Virtual.TimestampResponse(sig)
	return r, wrapIf("timestamp", err)
}

// TimestampAnnotation is a TSA response as cosign's
// dev.sigstore.cosign/rfc3161timestamp annotation.
func TimestampAnnotation(tsr []byte) ([]byte, error) {
	return json.Marshal(map[string]any{"SignedRFC3161Timestamp": tsr})
}

// InTotoPayloadType is the DSSE payload type of in-toto statements.
const InTotoPayloadType = "application/vnd.in-toto+json"

// CosignSignPredicateType is the predicate type of the statement that
// `cosign sign --new-bundle-format` signs.
const CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

// SimpleSigningPayload is the payload `cosign sign` signs for image: the
// simple-signing document naming its digest and repository.
func SimpleSigningPayload(image name.Digest) ([]byte, error) {
	b, err := sigpayload.Cosign{Image: image}.MarshalJSON()
	return b, wrapIf("simple-signing payload", err)
}

// Statement is an in-toto v1 statement about digest ("sha256:<hex>"),
// marshalled as cosign marshals it (protojson), with predicate when it is
// not nil. Statement(CosignSignPredicateType, d, nil) is what
// `cosign sign --new-bundle-format` signs.
func Statement(predicateType, digest string, predicate map[string]any) ([]byte, error) {
	alg, h, ok := strings.Cut(digest, ":")
	if !ok {
		return nil, fmt.Errorf("statement: digest %q is not alg:hex", digest)
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Digest: map[string]string{alg: h}}},
		PredicateType: predicateType,
	}
	if predicate != nil {
		b, err := json.Marshal(predicate)
		if err != nil {
			return nil, fmt.Errorf("statement: %w", err)
		}
		st.Predicate = new(structpb.Struct)
		if err := protojson.Unmarshal(b, st.Predicate); err != nil {
			return nil, fmt.Errorf("statement: %w", err)
		}
	}
	b, err := protojson.Marshal(st)
	return b, wrapIf("statement", err)
}

// DSSESign signs payload as a DSSE envelope of payloadType with key (ECDSA
// or RSA: it signs the SHA-256 of the pre-authentication encoding) and
// returns the envelope JSON and the signature.
func DSSESign(key crypto.Signer, payloadType string, payload []byte) (envelope, sig []byte, err error) {
	h := sha256.Sum256(dsse.PAE(payloadType, payload))
	if sig, err = key.Sign(rand.Reader, h[:], crypto.SHA256); err != nil {
		return nil, nil, fmt.Errorf("dsse sign: %w", err)
	}
	envelope, err = json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	return envelope, sig, wrapIf("dsse sign", err)
}

// KeylessSignature is one keyless signature in the making: what the signer
// produced and what the log and the TSA returned, before it is packaged as
// a classic signature or a bundle, so that a test can alter any part.
type KeylessSignature struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	// Content is what was signed: a simple-signing payload (classic) or an
	// in-toto statement (DSSE).
	Content []byte
	// DSSE says Content was signed as an in-toto DSSE envelope.
	DSSE      bool
	Signature []byte
	// Entry is the Rekor entry, nil for none.
	Entry *RekorEntry
	// TSR is the TSA's timestamp over Signature.
	TSR []byte
}

// SignPayload signs payload (the classic scheme: the signature is over the
// bytes) with a new certificate, logs it as a hashedrekord entry at Now and
// timestamps it.
func (s *Sigstore) SignPayload(o LeafOptions, payload []byte) (KeylessSignature, error) {
	cert, key, err := s.Leaf(o)
	if err != nil {
		return KeylessSignature{}, err
	}
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return KeylessSignature{}, fmt.Errorf("sign: %w", err)
	}
	return s.finish(KeylessSignature{Cert: cert, Chain: s.chain(o), Content: payload, Signature: sig}, RekorHashedRekord, payload)
}

// SignStatement signs statement as an in-toto DSSE envelope with a new
// certificate, logs it as a dsse entry at Now and timestamps it.
func (s *Sigstore) SignStatement(o LeafOptions, statement []byte) (KeylessSignature, error) {
	cert, key, err := s.Leaf(o)
	if err != nil {
		return KeylessSignature{}, err
	}
	env, sig, err := DSSESign(key, InTotoPayloadType, statement)
	if err != nil {
		return KeylessSignature{}, err
	}
	return s.finish(KeylessSignature{Cert: cert, Chain: s.chain(o), Content: statement, DSSE: true, Signature: sig}, RekorDSSE, env)
}

func (s *Sigstore) chain(o LeafOptions) []*x509.Certificate {
	if o.CA != nil {
		return []*x509.Certificate{o.CA.Cert}
	}
	return s.Fulcio.Intermediates
}

func (s *Sigstore) finish(k KeylessSignature, kind string, logged []byte) (KeylessSignature, error) {
	pemCert, err := cryptoutils.MarshalCertificateToPEM(k.Cert)
	if err != nil {
		return KeylessSignature{}, err
	}
	e, err := s.LogEntry(kind, logged, pemCert, k.Signature, s.Now)
	if err != nil {
		return KeylessSignature{}, err
	}
	k.Entry = &e
	if k.TSR, err = s.Timestamp(k.Signature); err != nil {
		return KeylessSignature{}, err
	}
	return k, nil
}

// CosignSignature is one layer of cosign's classic .sig manifest: the
// payload is the layer's blob, the rest its annotations (empty: absent).
type CosignSignature struct {
	Payload     []byte
	Signature   []byte
	Certificate []byte // PEM
	Chain       []byte // PEM
	RekorBundle []byte // JSON
	Timestamp   []byte // JSON
}

// Annotation keys of a cosign signature layer.
const (
	AnnotationSignature   = "dev.cosignproject.cosign/signature"
	AnnotationCertificate = "dev.sigstore.cosign/certificate"
	AnnotationChain       = "dev.sigstore.cosign/chain"
	AnnotationBundle      = "dev.sigstore.cosign/bundle"
	AnnotationTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// Annotations are the layer's annotations, as cosign writes them.
func (c CosignSignature) Annotations() map[string]string {
	a := map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(c.Signature)}
	for k, v := range map[string][]byte{AnnotationCertificate: c.Certificate, AnnotationChain: c.Chain, AnnotationBundle: c.RekorBundle, AnnotationTimestamp: c.Timestamp} {
		if len(v) > 0 {
			a[k] = string(v)
		}
	}
	return a
}

// Classic packages k as a cosign .sig layer, with the TSA timestamp
// annotation when withTSA.
func (k KeylessSignature) Classic(withTSA bool) (CosignSignature, error) {
	if k.DSSE {
		return CosignSignature{}, errors.New("classic signature: a DSSE signature is an attestation, not a .sig layer")
	}
	c := CosignSignature{Payload: k.Content, Signature: k.Signature}
	var err error
	if k.Cert != nil {
		if c.Certificate, err = cryptoutils.MarshalCertificateToPEM(k.Cert); err != nil {
			return CosignSignature{}, err
		}
	}
	if len(k.Chain) > 0 {
		if c.Chain, err = cryptoutils.MarshalCertificatesToPEM(k.Chain); err != nil {
			return CosignSignature{}, err
		}
	}
	if k.Entry != nil {
		if c.RekorBundle, err = k.Entry.Annotation(); err != nil {
			return CosignSignature{}, err
		}
	}
	if withTSA {
		if c.Timestamp, err = TimestampAnnotation(k.TSR); err != nil {
			return CosignSignature{}, err
		}
	}
	return c, nil
}

// Bundle packages k (a DSSE signature) as a Sigstore bundle, as
// `cosign sign --new-bundle-format` does: v0.3, the certificate, the log
// entry with its inclusion proof, and the TSA timestamp when withTSA.
func (s *Sigstore) Bundle(k KeylessSignature, withTSA bool) ([]byte, error) {
	if !k.DSSE {
		return nil, errors.New("bundle: not a DSSE signature")
	}
	o := BundleOptions{Certificate: k.Cert}
	if k.Entry != nil {
		e, err := s.TransparencyLogEntry(*k.Entry, true)
		if err != nil {
			return nil, err
		}
		o.Entries = append(o.Entries, e)
	}
	if withTSA {
		o.Timestamps = append(o.Timestamps, k.TSR)
	}
	return DSSEBundle(o, InTotoPayloadType, k.Content, k.Signature)
}

// Mutation alters a keyless signature before it is packaged, to make one
// of the ways a signature can be wrong.
type Mutation func(s *Sigstore, k *KeylessSignature) error

// WithoutRekorEntry drops the log entry, as `cosign sign --tlog-upload=false`.
func WithoutRekorEntry() Mutation {
	return func(_ *Sigstore, k *KeylessSignature) error {
		k.Entry = nil
		return nil
	}
}

// AlterRekorEntry moves the entry's integrated time by a second after the
// log signed it, so its signed entry timestamp no longer verifies.
func AlterRekorEntry() Mutation {
	return func(_ *Sigstore, k *KeylessSignature) error {
		if k.Entry == nil {
			return errors.New("alter Rekor entry: no entry")
		}
		e := *k.Entry
		e.IntegratedTime++
		k.Entry = &e
		return nil
	}
}

// RekorEntryOfAnotherSignature replaces the entry with a genuine one, signed
// by the log, about another signature over the same content by another
// certificate of the same identity: valid, but not about this signature.
func RekorEntryOfAnotherSignature() Mutation {
	return func(s *Sigstore, k *KeylessSignature) error {
		sign := s.SignPayload
		if k.DSSE {
			sign = s.SignStatement
		}
		other, err := sign(s.DefaultLeaf(), k.Content)
		if err != nil {
			return err
		}
		k.Entry = other.Entry
		return nil
	}
}

func (s *Sigstore) mutate(k KeylessSignature, mutations []Mutation) (KeylessSignature, error) {
	for _, m := range mutations {
		if err := m(s, &k); err != nil {
			return KeylessSignature{}, err
		}
	}
	return k, nil
}

// SignClassic signs payload (see SimpleSigningPayload) keylessly, applies
// mutations, and returns the cosign .sig layer: payload, signature,
// certificate and chain PEM, Rekor bundle annotation (no TSA timestamp).
func (s *Sigstore) SignClassic(o LeafOptions, payload []byte, mutations ...Mutation) (CosignSignature, error) {
	k, err := s.SignPayload(o, payload)
	if err != nil {
		return CosignSignature{}, err
	}
	if k, err = s.mutate(k, mutations); err != nil {
		return CosignSignature{}, err
	}
	return k.Classic(false)
}

// SignBundle signs the cosign sign/v1 statement for digest keylessly,
// applies mutations, and returns the Sigstore bundle JSON that
// `cosign sign --new-bundle-format` attaches to the image.
func (s *Sigstore) SignBundle(o LeafOptions, digest string, mutations ...Mutation) ([]byte, error) {
	st, err := Statement(CosignSignPredicateType, digest, nil)
	if err != nil {
		return nil, err
	}
	k, err := s.SignStatement(o, st)
	if err != nil {
		return nil, err
	}
	if k, err = s.mutate(k, mutations); err != nil {
		return nil, err
	}
	return s.Bundle(k, false)
}

// BundleMediaTypeV03 is the media type of the bundles cosign writes, as the
// bundle's mediaType, the referrer's artifactType and its layer's media type.
const BundleMediaTypeV03 = "application/vnd.dev.sigstore.bundle.v0.3+json"

// BundleOptions is the verification material of a bundle.
type BundleOptions struct {
	// Version is "0.1", "0.2" or "0.3" (the default).
	Version string
	// Certificate signed (a chain of one before v0.3, the certificate
	// from v0.3 on); or PublicKey did, named by a hint.
	Certificate *x509.Certificate
	PublicKey   crypto.PublicKey
	Entries     []*protorekor.TransparencyLogEntry
	// Timestamps are RFC 3161 timestamp responses.
	Timestamps [][]byte
}

// BundleProto is a bundle with o's verification material and no content,
// for tests that build the content themselves.
func BundleProto(o BundleOptions) (*protobundle.Bundle, error) {
	version := o.Version
	if version == "" {
		version = "0.3"
	}
	mt := BundleMediaTypeV03
	if version != "0.3" {
		mt = "application/vnd.dev.sigstore.bundle+json;version=" + version
	}
	vm := &protobundle.VerificationMaterial{TlogEntries: o.Entries}
	switch {
	case o.PublicKey != nil:
		der, err := x509.MarshalPKIXPublicKey(o.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		sum := sha256.Sum256(der)
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: base64.StdEncoding.EncodeToString(sum[:])}}
	case o.Certificate == nil:
		return nil, errors.New("bundle: neither a certificate nor a public key")
	case version == "0.3":
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: o.Certificate.Raw}}
	default:
		vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
			Certificates: []*protocommon.X509Certificate{{RawBytes: o.Certificate.Raw}},
		}}
	}
	if len(o.Timestamps) > 0 {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, ts := range o.Timestamps {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
		}
	}
	return &protobundle.Bundle{MediaType: mt, VerificationMaterial: vm}, nil
}

// DSSEBundle is a bundle of a DSSE signature sig over payload.
func DSSEBundle(o BundleOptions, payloadType string, payload, sig []byte) ([]byte, error) {
	pb, err := BundleProto(o)
	if err != nil {
		return nil, err
	}
	pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
		Payload: payload, PayloadType: payloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
	}}
	b, err := protojson.Marshal(pb)
	return b, wrapIf("bundle", err)
}

// MessageBundle is a bundle of a message signature sig over blob.
func MessageBundle(o BundleOptions, blob, sig []byte) ([]byte, error) {
	pb, err := BundleProto(o)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(blob)
	pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
		MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
		Signature:     sig,
	}}
	b, err := protojson.Marshal(pb)
	return b, wrapIf("bundle", err)
}

// SimpleSigningMediaType is the media type of a cosign signature layer.
const SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"

// PushCosignSignatures writes sigs as the signatures of image, at its
// "sha256-<hex>.sig" tag, as `cosign sign` writes them: an OCI manifest
// with an image config, one simple-signing layer per signature, and the
// signature material as layer annotations. It replaces what the tag held.
func (r *Registry) PushCosignSignatures(image name.Digest, sigs ...CosignSignature) (name.Tag, error) {
	if image.Context().RegistryStr() != r.Addr {
		return name.Tag{}, fmt.Errorf("push signatures of %s: not in registry %s", image, r.Addr)
	}
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("push signatures of %s: %w", image, err)
	}
	tag := image.Context().Tag(h.Algorithm + "-" + h.Hex + ".sig")
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(sigs))
	for _, s := range sigs {
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(s.Payload, SimpleSigningMediaType), Annotations: s.Annotations()})
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		return name.Tag{}, fmt.Errorf("push signatures of %s: %w", image, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := remote.Write(tag, img, r.remoteOptions(ctx)...); err != nil {
		return name.Tag{}, fmt.Errorf("push signatures of %s: %w", image, err)
	}
	return tag, nil
}

// PushBundle attaches bundle (a v0.3 Sigstore bundle's JSON) to image as
// `cosign sign|attest --new-bundle-format` does: a manifest with the empty
// config, the bundle as its one layer, artifactType
// BundleMediaTypeV03 and image as its subject, pushed by digest. A registry
// with the referrers API lists it there; on one without,
// go-containerregistry adds it to the "sha256-<hex>" fallback index, as
// for cosign. It returns the bundle manifest's digest reference.
func (r *Registry) PushBundle(image name.Digest, bundle []byte) (name.Digest, error) {
	if image.Context().RegistryStr() != r.Addr {
		return name.Digest{}, fmt.Errorf("push bundle for %s: not in registry %s", image, r.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	opts := r.remoteOptions(ctx)
	subject, err := remote.Head(image, opts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
	}
	// cosign uploads the "{}" config with the image config media type and
	// names it in the manifest as the empty descriptor.
	config := static.NewLayer([]byte("{}"), types.OCIConfigJSON)
	layer := static.NewLayer(bundle, BundleMediaTypeV03)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(image.Context(), l, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
		}
		d, err := partial.Descriptor(l)
		if err != nil {
			return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
		}
		descs = append(descs, v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
	}
	descs[0].MediaType, descs[0].ArtifactType = "application/vnd.oci.empty.v1+json", BundleMediaTypeV03
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        descs[0],
		Layers:        descs[1:],
		Annotations: map[string]string{
			"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": CosignSignPredicateType,
		},
		Subject:      &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		ArtifactType: BundleMediaTypeV03,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
	}
	ref := image.Context().Digest(h.String())
	if err := remote.Put(ref, referrerManifest(raw), opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push bundle for %s: %w", image, err)
	}
	return ref, nil
}

// referrerManifest is an OCI image manifest to put as it is.
type referrerManifest []byte

func (m referrerManifest) RawManifest() ([]byte, error) { return m, nil }
func (referrerManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}
