package verify

import (
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
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/types"
	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// testSigstore is a Sigstore deployment in memory, offline: a Fulcio CA
// that issues certificates with Fulcio's extensions and an embedded SCT
// from its CT log, and sigstore-go's VirtualSigstore (pkg/testing/ca) as
// the Rekor log and the TSA. Its trusted root is written out as a
// trusted_root.json, so that tests load it the way the daemon does.
type testSigstore struct {
	vs        *ca.VirtualSigstore
	fulcio    *root.FulcioCertificateAuthority
	interKey  *ecdsa.PrivateKey
	ctKey     *ecdsa.PrivateKey
	rekorID   []byte // raw log ID of the VirtualSigstore's Rekor key
	rootFile  string // trusted_root.json with the CT log
	noCTFile  string // the same root without CT logs
	now       time.Time
	trustedCT *root.TrustedRoot
}

func newTestSigstore(t testing.TB) *testSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testSigstore{vs: vs, now: time.Now()}
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ts.interKey = interKey
	ts.fulcio = &root.FulcioCertificateAuthority{
		Root: rootCert, Intermediates: []*x509.Certificate{inter},
		ValidityPeriodStart: ts.now.Add(-time.Hour), ValidityPeriodEnd: ts.now.Add(time.Hour),
		URI: "https://fulcio.test",
	}
	if ts.ctKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	rekorLogs := vs.RekorLogs()
	var rekorPub crypto.PublicKey
	for _, l := range rekorLogs {
		rekorPub = l.PublicKey
	}
	ts.rekorID = logID(t, rekorPub)
	rekor := map[string]*root.TransparencyLog{hex.EncodeToString(ts.rekorID): {
		BaseURL: "https://rekor.localhost", ID: ts.rekorID, ValidityPeriodStart: ts.now.Add(-time.Hour),
		HashFunc: crypto.SHA256, PublicKey: rekorPub, SignatureHashFunc: crypto.SHA256,
	}}
	ctID := logID(t, ts.ctKey.Public())
	ctlogs := map[string]*root.TransparencyLog{hex.EncodeToString(ctID): {
		BaseURL: "https://ct.test", ID: ctID, ValidityPeriodStart: ts.now.Add(-time.Hour),
		HashFunc: crypto.SHA256, PublicKey: ts.ctKey.Public(), SignatureHashFunc: crypto.SHA256,
	}}
	tsas := vs.TimestampingAuthorities()
	dir := t.TempDir()
	write := func(name string, ct map[string]*root.TransparencyLog) (string, *root.TrustedRoot) {
		tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ts.fulcio}, ct, tsas, rekor)
		if err != nil {
			t.Fatal(err)
		}
		b, err := tr.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p, tr
	}
	ts.rootFile, ts.trustedCT = write("trusted_root.json", ctlogs)
	ts.noCTFile, _ = write("trusted_root_no_ct.json", map[string]*root.TransparencyLog{})
	return ts
}

func logID(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:]
}

// verifier builds a Verifier trusting ts's root (with its CT log).
func (ts *testSigstore) verifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := New(WithTrustedRootFiles(ts.rootFile))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// leafOpts describes a signing certificate.
type leafOpts struct {
	subject, issuer       string
	ext                   certificate.Extensions
	notBefore, notAfter   time.Time
	noSCT                 bool
	issuerCert, issuerKey any // another CA (default: ts's Fulcio intermediate)
}

const (
	testIssuer  = "https://token.actions.githubusercontent.com"
	testSubject = "https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.0.0"
	testRepoURI = "https://github.com/myorg/app"
	testRef     = "refs/tags/v1.0.0"
)

// defaultLeaf is a GitHub Actions certificate, valid around now.
func (ts *testSigstore) defaultLeaf() leafOpts {
	return leafOpts{
		subject: testSubject, issuer: testIssuer,
		ext: certificate.Extensions{
			SourceRepositoryURI: testRepoURI,
			SourceRepositoryRef: testRef,
			BuildSignerURI:      testSubject,
		},
		notBefore: ts.now.Add(-time.Minute), notAfter: ts.now.Add(9 * time.Minute),
	}
}

// leaf issues a certificate as Fulcio does: SAN, issuer (v2 OID),
// extensions, code signing, and an embedded SCT from ts's CT log.
func (ts *testSigstore) leaf(t testing.TB, o leafOpts) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent, parentKey := ts.fulcio.Intermediates[0], crypto.Signer(ts.interKey)
	if o.issuerCert != nil {
		parent, parentKey = o.issuerCert.(*x509.Certificate), o.issuerKey.(crypto.Signer)
	}
	var exts []pkix.Extension
	add := func(oid asn1.ObjectIdentifier, v string) {
		if v == "" {
			return
		}
		der, err := asn1.MarshalWithParams(v, "utf8")
		if err != nil {
			t.Fatal(err)
		}
		exts = append(exts, pkix.Extension{Id: oid, Value: der})
	}
	add(certificate.OIDIssuerV2, o.issuer)
	add(certificate.OIDSourceRepositoryURI, o.ext.SourceRepositoryURI)
	add(certificate.OIDSourceRepositoryRef, o.ext.SourceRepositoryRef)
	add(certificate.OIDBuildSignerURI, o.ext.BuildSignerURI)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		NotBefore:       o.notBefore,
		NotAfter:        o.notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: exts,
	}
	if strings.Contains(o.subject, "://") {
		u, err := url.Parse(o.subject)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{o.subject}
	}
	create := func() *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pre := create()
	if o.noSCT {
		return pre, key
	}
	// Embed an SCT over the precertificate, as a CT log would have signed
	// it for Fulcio.
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, Timestamp: uint64(o.notBefore.UnixMilli()), LogID: ct.LogID{KeyID: [32]byte(logID(t, ts.ctKey.Public()))}}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version: ct.V1, LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp, EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{IssuerKeyHash: sha256.Sum256(parent.RawSubjectPublicKeyInfo), TBSCertificate: pre.RawTBSCertificate},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(input)
	sigBytes, err := ecdsa.SignASN1(rand.Reader, ts.ctKey, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sct.Signature = ct.DigitallySigned{Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA}, Signature: sigBytes}
	list, err := ctx509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cttls.Marshal(*list)
	if err != nil {
		t.Fatal(err)
	}
	val, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExtraExtensions = append(append([]pkix.Extension(nil), exts...), pkix.Extension{Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTSCT), Value: val})
	return create(), key
}

// rekorEntry is a Rekor v1 entry as the log returns it.
type rekorEntry struct {
	body           []byte
	integratedTime int64
	logIndex       int64
	logID          []byte
	set            []byte
}

// logEntry enters a hashedrekord (artifact = the signed payload) or dsse
// (artifact = the envelope JSON) entry for sig by the PEM key or
// certificate into ts's Rekor, at integrated.
func (ts *testSigstore) logEntry(t testing.TB, kind string, artifactBytes, pemBytes, sig []byte, integrated time.Time) rekorEntry {
	t.Helper()
	ctx := context.Background()
	props := types.ArtifactProperties{PublicKeyBytes: [][]byte{pemBytes}, PKIFormat: string(pki.X509), SignatureBytes: sig}
	version := ""
	switch kind {
	case hashedrekord.KIND:
		sum := sha256.Sum256(artifactBytes)
		props.ArtifactHash = hex.EncodeToString(sum[:])
		version = "0.0.1"
	case rekordsse.KIND:
		props.ArtifactBytes = artifactBytes
		version = "0.0.1"
	default:
		t.Fatalf("kind %q", kind)
	}
	pe, err := types.NewProposedEntry(ctx, kind, version, props)
	if err != nil {
		t.Fatal(err)
	}
	impl, err := types.CreateVersionedEntry(pe)
	if err != nil {
		t.Fatal(err)
	}
	body, err := types.CanonicalizeEntry(ctx, impl)
	if err != nil {
		t.Fatal(err)
	}
	e := rekorEntry{body: body, integratedTime: integrated.Unix(), logIndex: 0, logID: ts.rekorID}
	e.set = ts.sign(t, e)
	return e
}

// sign makes the entry's signed entry timestamp.
func (ts *testSigstore) sign(t testing.TB, e rekorEntry) []byte {
	t.Helper()
	set, err := ts.vs.RekorSignPayload(tlog.RekorPayload{
		Body: base64.StdEncoding.EncodeToString(e.body), IntegratedTime: e.integratedTime,
		LogIndex: e.logIndex, LogID: hex.EncodeToString(e.logID),
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// annotation is the entry as cosign's dev.sigstore.cosign/bundle annotation.
func (e rekorEntry) annotation(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"SignedEntryTimestamp": e.set,
		"Payload": map[string]any{
			"body": base64.StdEncoding.EncodeToString(e.body), "integratedTime": e.integratedTime,
			"logIndex": e.logIndex, "logID": hex.EncodeToString(e.logID),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proto is the entry as a bundle's transparency-log entry, with its
// inclusion promise and, when proof is set, an inclusion proof (required
// from bundle v0.2 on).
func (ts *testSigstore) proto(t testing.TB, e rekorEntry, kind string, proof bool) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := &protorekor.TransparencyLogEntry{
		LogIndex: e.logIndex, LogId: &protocommon.LogId{KeyId: e.logID},
		KindVersion:       &protorekor.KindVersion{Kind: kind, Version: "0.0.1"},
		IntegratedTime:    e.integratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: e.set},
		CanonicalizedBody: e.body,
	}
	if proof {
		p, err := ts.vs.GetInclusionProof(e.body)
		if err != nil {
			t.Fatal(err)
		}
		tle.InclusionProof = inclusionProof(t, p)
	}
	return tle
}

func inclusionProof(t testing.TB, p *models.InclusionProof) *protorekor.InclusionProof {
	t.Helper()
	root, err := hex.DecodeString(*p.RootHash)
	if err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, h := range p.Hashes {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, b)
	}
	return &protorekor.InclusionProof{LogIndex: *p.LogIndex, RootHash: root, TreeSize: *p.TreeSize, Hashes: hashes, Checkpoint: &protorekor.Checkpoint{Envelope: *p.Checkpoint}}
}

// tsaAnnotation is a TSA timestamp over sig as cosign's
// dev.sigstore.cosign/rfc3161timestamp annotation.
func (ts *testSigstore) timestamp(t testing.TB, sig []byte) []byte {
	t.Helper()
	r, err := ts.vs.TimestampResponse(sig)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tsaAnnotation(t testing.TB, tsr []byte) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"SignedRFC3161Timestamp": tsr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func certPEM(t testing.TB, c *x509.Certificate) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signECDSA(t testing.TB, key *ecdsa.PrivateKey, msg []byte) []byte {
	t.Helper()
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// statementJSON is an in-toto v1 statement naming digest.
func statementJSON(t testing.TB, predicateType, digest string, predicate any) []byte {
	t.Helper()
	alg, h, _ := strings.Cut(digest, ":")
	st := map[string]any{
		"_type":         StatementTypeV1,
		"subject":       []any{map[string]any{"name": testRepo, "digest": map[string]string{alg: h}}},
		"predicateType": predicateType,
	}
	if predicate != nil {
		st["predicate"] = predicate
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dsseSign signs statement as a DSSE in-toto envelope.
func dsseSign(t testing.TB, key *ecdsa.PrivateKey, statement []byte) (env []byte, sig []byte) {
	t.Helper()
	sig = signECDSA(t, key, dsse.PAE(InTotoPayloadType, statement))
	env, err := json.Marshal(map[string]any{
		"payloadType": InTotoPayloadType,
		"payload":     base64.StdEncoding.EncodeToString(statement),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return env, sig
}

// bundleOpts says how to package a signature as a bundle.
type bundleOpts struct {
	version   string // "0.1", "0.2", "0.3" (default)
	entry     *protorekor.TransparencyLogEntry
	timestamp []byte
	key       crypto.PublicKey // key-signed: a public key hint instead of the certificate
}

// dsseBundle packages a DSSE signature over statement as a bundle.
func dsseBundle(t testing.TB, cert *x509.Certificate, statement, sig []byte, o bundleOpts) []byte {
	t.Helper()
	pb := bundleSkeleton(t, cert, o)
	pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
		Payload: statement, PayloadType: InTotoPayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
	}}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// messageBundle packages a message signature over blob as a bundle.
func messageBundle(t testing.TB, cert *x509.Certificate, blob, sig []byte, o bundleOpts) []byte {
	t.Helper()
	pb := bundleSkeleton(t, cert, o)
	sum := sha256.Sum256(blob)
	pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
		MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
		Signature:     sig,
	}}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bundleSkeleton(t testing.TB, cert *x509.Certificate, o bundleOpts) *protobundle.Bundle {
	t.Helper()
	version := o.version
	if version == "" {
		version = "0.3"
	}
	mt := "application/vnd.dev.sigstore.bundle.v0.3+json"
	if version != "0.3" {
		mt = "application/vnd.dev.sigstore.bundle+json;version=" + version
	}
	vm := &protobundle.VerificationMaterial{}
	switch {
	case o.key != nil:
		der, err := x509.MarshalPKIXPublicKey(o.key)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: base64.StdEncoding.EncodeToString(sum[:])}}
	case version == "0.3":
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert.Raw}}
	default:
		vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
			Certificates: []*protocommon.X509Certificate{{RawBytes: cert.Raw}},
		}}
	}
	if o.entry != nil {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{o.entry}
	}
	if o.timestamp != nil {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: o.timestamp}}}
	}
	return &protobundle.Bundle{MediaType: mt, VerificationMaterial: vm}
}

// keylessParts is one keyless signature in the making: what the signer
// produced and what the log returned, before it is packaged as a classic
// signature or a bundle, so that tests can alter any part.
type keylessParts struct {
	cert    *x509.Certificate
	chain   []*x509.Certificate
	content []byte // classic: the simple-signing payload; bundle: the statement
	sig     []byte
	entry   *rekorEntry
	tsr     []byte
}

// classicParts signs a simple-signing payload for digest with a new
// certificate and logs it.
func (ts *testSigstore) classicParts(t testing.TB, o leafOpts, digest string) keylessParts {
	t.Helper()
	cert, key := ts.leaf(t, o)
	payload := cosignPayload(t, testRepo, digest)
	sig := signECDSA(t, key, payload)
	e := ts.logEntry(t, hashedrekord.KIND, payload, certPEM(t, cert), sig, ts.now)
	return keylessParts{cert: cert, chain: ts.fulcio.Intermediates, content: payload, sig: sig, entry: &e, tsr: ts.timestamp(t, sig)}
}

// bundleParts signs a cosign image-signature statement for digest with a
// new certificate and logs it.
func (ts *testSigstore) bundleParts(t testing.TB, o leafOpts, predicateType, digest string, predicate any) keylessParts {
	t.Helper()
	cert, key := ts.leaf(t, o)
	st := statementJSON(t, predicateType, digest, predicate)
	env, sig := dsseSign(t, key, st)
	e := ts.logEntry(t, rekordsse.KIND, env, certPEM(t, cert), sig, ts.now)
	return keylessParts{cert: cert, content: st, sig: sig, entry: &e, tsr: ts.timestamp(t, sig)}
}

// classic packages parts as a classic .sig layer.
func (p keylessParts) classic(t testing.TB, withTSA bool) artifact.Signature {
	t.Helper()
	s := artifact.Signature{Payload: p.content, Signature: p.sig, Certificate: certPEM(t, p.cert), Origin: "keyless", Attached: testDigest}
	for _, c := range p.chain {
		s.Chain = append(s.Chain, certPEM(t, c)...)
	}
	if p.entry != nil {
		s.RekorBundle = p.entry.annotation(t)
	}
	if withTSA {
		s.Timestamp = tsaAnnotation(t, p.tsr)
	}
	return s
}

// bundle packages parts as a v0.3 bundle.
func (p keylessParts) bundle(t testing.TB, ts *testSigstore, withTSA bool) artifact.Bundle {
	t.Helper()
	o := bundleOpts{}
	if p.entry != nil {
		o.entry = ts.proto(t, *p.entry, rekordsse.KIND, true)
	}
	if withTSA {
		o.timestamp = p.tsr
	}
	return artifact.Bundle{JSON: dsseBundle(t, p.cert, p.content, p.sig, o), MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", Origin: "bundle", Attached: testDigest}
}

// attestation packages parts (a DSSE statement) as a classic .att layer.
func (p keylessParts) attestation(t testing.TB) artifact.Attestation {
	t.Helper()
	env, err := json.Marshal(map[string]any{
		"payloadType": InTotoPayloadType,
		"payload":     base64.StdEncoding.EncodeToString(p.content),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(p.sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := artifact.Attestation{Envelope: env, Origin: "att", Attached: testDigest}
	if p.cert != nil {
		a.Certificate = certPEM(t, p.cert)
	}
	if p.entry != nil {
		a.RekorBundle = p.entry.annotation(t)
	}
	return a
}

// timeUnix is t at the second, as a log records integrated times.
func timeUnix(t time.Time) time.Time { return time.Unix(t.Unix(), 0) }
