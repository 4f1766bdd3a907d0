package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/artifact"
)

// testSigstore is testenv's offline Sigstore deployment (a Fulcio CA with
// SCTs, sigstore-go's VirtualSigstore as Rekor and TSA, trusted roots
// written as files; see testenv.Sigstore), with the helpers these tests
// use: each fails the test on error, and the values they return have
// unexported fields that the tests alter to make bad signatures.
type testSigstore struct {
	env      *testenv.Sigstore
	vs       *ca.VirtualSigstore
	rootFile string // trusted_root.json with the CT log
	noCTFile string // the same root without CT logs
	now      time.Time
}

func newTestSigstore(t testing.TB) *testSigstore {
	t.Helper()
	s := testenv.NewSigstore(t)
	return &testSigstore{env: s, vs: s.Virtual, rootFile: s.RootFile, noCTFile: s.NoCTRootFile, now: s.Now}
}

// outcome holds a value and an error, so that try(f()).must(t) can fail
// the test on the error in one expression.
type outcome[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

func (o outcome[T]) must(t testing.TB) T {
	t.Helper()
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.v
}

// verifier builds a Verifier trusting ts's root (with its CT log).
func (ts *testSigstore) verifier(t testing.TB) *Verifier {
	t.Helper()
	return try(New(WithTrustedRootFiles(ts.rootFile))).must(t)
}

// leafOpts describes a signing certificate (testenv.LeafOptions).
type leafOpts struct {
	subject, issuer       string
	ext                   certificate.Extensions
	notBefore, notAfter   time.Time
	noSCT                 bool
	issuerCert, issuerKey any // another CA (default: ts's Fulcio intermediate)
}

func (o leafOpts) env() testenv.LeafOptions {
	l := testenv.LeafOptions{Subject: o.subject, Issuer: o.issuer, Extensions: o.ext, NotBefore: o.notBefore, NotAfter: o.notAfter, NoSCT: o.noSCT}
	if o.issuerCert != nil {
		l.CA = &testenv.CA{Cert: o.issuerCert.(*x509.Certificate), Key: o.issuerKey.(crypto.Signer)}
	}
	return l
}

const (
	testIssuer  = testenv.KeylessIssuer
	testSubject = testenv.KeylessSubject
	testRepoURI = testenv.KeylessRepositoryURI
	testRef     = testenv.KeylessRef
)

// defaultLeaf is a GitHub Actions certificate, valid around now.
func (ts *testSigstore) defaultLeaf() leafOpts {
	d := ts.env.DefaultLeaf()
	return leafOpts{subject: d.Subject, issuer: d.Issuer, ext: d.Extensions, notBefore: d.NotBefore, notAfter: d.NotAfter}
}

// leaf issues a certificate as Fulcio does (testenv.Sigstore.Leaf).
func (ts *testSigstore) leaf(t testing.TB, o leafOpts) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	cert, key, err := ts.env.Leaf(o.env())
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// rekorEntry is a Rekor v1 entry as the log returns it (testenv.RekorEntry).
type rekorEntry struct {
	body           []byte
	integratedTime int64
	logIndex       int64
	logID          []byte
	set            []byte
}

func (e rekorEntry) env() testenv.RekorEntry {
	return testenv.RekorEntry{Body: e.body, IntegratedTime: e.integratedTime, LogIndex: e.logIndex, LogID: e.logID, SET: e.set}
}

func entryOf(e testenv.RekorEntry) rekorEntry {
	return rekorEntry{body: e.Body, integratedTime: e.IntegratedTime, logIndex: e.LogIndex, logID: e.LogID, set: e.SET}
}

// logEntry enters a hashedrekord (artifact = the signed payload) or dsse
// (artifact = the envelope JSON) entry for sig by the PEM key or
// certificate into ts's Rekor, at integrated.
func (ts *testSigstore) logEntry(t testing.TB, kind string, artifactBytes, pemBytes, sig []byte, integrated time.Time) rekorEntry {
	t.Helper()
	return entryOf(try(ts.env.LogEntry(kind, artifactBytes, pemBytes, sig, integrated)).must(t))
}

// sign makes the entry's signed entry timestamp.
func (ts *testSigstore) sign(t testing.TB, e rekorEntry) []byte {
	t.Helper()
	ee := e.env()
	if err := ts.env.SignEntry(&ee); err != nil {
		t.Fatal(err)
	}
	return ee.SET
}

// annotation is the entry as cosign's dev.sigstore.cosign/bundle annotation.
func (e rekorEntry) annotation(t testing.TB) []byte {
	t.Helper()
	return try(e.env().Annotation()).must(t)
}

// proto is the entry as a bundle's transparency-log entry, with its
// inclusion promise and, when proof is set, an inclusion proof (required
// from bundle v0.2 on). The kind is the body's own.
func (ts *testSigstore) proto(t testing.TB, e rekorEntry, _ string, proof bool) *protorekor.TransparencyLogEntry {
	t.Helper()
	return try(ts.env.TransparencyLogEntry(e.env(), proof)).must(t)
}

// timestamp is a TSA timestamp over sig.
func (ts *testSigstore) timestamp(t testing.TB, sig []byte) []byte {
	t.Helper()
	return try(ts.env.Timestamp(sig)).must(t)
}

// tsaAnnotation is a TSA timestamp as cosign's
// dev.sigstore.cosign/rfc3161timestamp annotation.
func tsaAnnotation(t testing.TB, tsr []byte) []byte {
	t.Helper()
	return try(testenv.TimestampAnnotation(tsr)).must(t)
}

func certPEM(t testing.TB, c *x509.Certificate) []byte {
	t.Helper()
	return try(cryptoutils.MarshalCertificateToPEM(c)).must(t)
}

func signECDSA(t testing.TB, key *ecdsa.PrivateKey, msg []byte) []byte {
	t.Helper()
	h := sha256.Sum256(msg)
	return try(ecdsa.SignASN1(rand.Reader, key, h[:])).must(t)
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
	return try(json.Marshal(st)).must(t)
}

// dsseSign signs statement as a DSSE in-toto envelope.
func dsseSign(t testing.TB, key *ecdsa.PrivateKey, statement []byte) (env []byte, sig []byte) {
	t.Helper()
	env, sig, err := testenv.DSSESign(key, InTotoPayloadType, statement)
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

func (o bundleOpts) env(cert *x509.Certificate) testenv.BundleOptions {
	b := testenv.BundleOptions{Version: o.version, Certificate: cert, PublicKey: o.key}
	if o.entry != nil {
		b.Entries = []*protorekor.TransparencyLogEntry{o.entry}
	}
	if o.timestamp != nil {
		b.Timestamps = [][]byte{o.timestamp}
	}
	return b
}

// dsseBundle packages a DSSE signature over statement as a bundle.
func dsseBundle(t testing.TB, cert *x509.Certificate, statement, sig []byte, o bundleOpts) []byte {
	t.Helper()
	return try(testenv.DSSEBundle(o.env(cert), InTotoPayloadType, statement, sig)).must(t)
}

// messageBundle packages a message signature over blob as a bundle.
func messageBundle(t testing.TB, cert *x509.Certificate, blob, sig []byte, o bundleOpts) []byte {
	t.Helper()
	return try(testenv.MessageBundle(o.env(cert), blob, sig)).must(t)
}

// bundleSkeleton is a bundle with o's verification material and no content.
func bundleSkeleton(t testing.TB, cert *x509.Certificate, o bundleOpts) *protobundle.Bundle {
	t.Helper()
	return try(testenv.BundleProto(o.env(cert))).must(t)
}

// keylessParts is one keyless signature in the making
// (testenv.KeylessSignature): what the signer produced and what the log
// returned, before it is packaged as a classic signature or a bundle, so
// that tests can alter any part.
type keylessParts struct {
	cert    *x509.Certificate
	chain   []*x509.Certificate
	content []byte // classic: the simple-signing payload; bundle: the statement
	dsse    bool
	sig     []byte
	entry   *rekorEntry
	tsr     []byte
}

func partsOf(k testenv.KeylessSignature) keylessParts {
	p := keylessParts{cert: k.Cert, chain: k.Chain, content: k.Content, dsse: k.DSSE, sig: k.Signature, tsr: k.TSR}
	if k.Entry != nil {
		e := entryOf(*k.Entry)
		p.entry = &e
	}
	return p
}

func (p keylessParts) env() testenv.KeylessSignature {
	k := testenv.KeylessSignature{Cert: p.cert, Chain: p.chain, Content: p.content, DSSE: p.dsse, Signature: p.sig, TSR: p.tsr}
	if p.entry != nil {
		e := p.entry.env()
		k.Entry = &e
	}
	return k
}

// classicParts signs a simple-signing payload for digest with a new
// certificate and logs it.
func (ts *testSigstore) classicParts(t testing.TB, o leafOpts, digest string) keylessParts {
	t.Helper()
	return partsOf(try(ts.env.SignPayload(o.env(), cosignPayload(t, testRepo, digest))).must(t))
}

// bundleParts signs a cosign image-signature statement for digest with a
// new certificate and logs it.
func (ts *testSigstore) bundleParts(t testing.TB, o leafOpts, predicateType, digest string, predicate any) keylessParts {
	t.Helper()
	p := partsOf(try(ts.env.SignStatement(o.env(), statementJSON(t, predicateType, digest, predicate))).must(t))
	p.chain = nil // as cosign's bundles: the leaf alone
	return p
}

// classic packages parts as a classic .sig layer.
func (p keylessParts) classic(t testing.TB, withTSA bool) artifact.Signature {
	t.Helper()
	c := try(p.env().Classic(withTSA)).must(t)
	return artifact.Signature{Payload: c.Payload, Signature: c.Signature, Certificate: c.Certificate, Chain: c.Chain, RekorBundle: c.RekorBundle, Timestamp: c.Timestamp,
		Origin: "keyless", Attached: testDigest}
}

// bundle packages parts as a v0.3 bundle.
func (p keylessParts) bundle(t testing.TB, ts *testSigstore, withTSA bool) artifact.Bundle {
	t.Helper()
	return artifact.Bundle{JSON: try(ts.env.Bundle(p.env(), withTSA)).must(t), MediaType: testenv.BundleMediaTypeV03, Origin: "bundle", Attached: testDigest}
}

// attestation packages parts (a DSSE statement) as a classic .att layer.
func (p keylessParts) attestation(t testing.TB) artifact.Attestation {
	t.Helper()
	env := try(json.Marshal(map[string]any{
		"payloadType": InTotoPayloadType,
		"payload":     base64.StdEncoding.EncodeToString(p.content),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(p.sig)}},
	})).must(t)
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
