package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/tpm"
)

// attestationVersion is the attestation document's format version.
const attestationVersion = 1

// maxAttestationBytes bounds an attestation document read for checking.
const maxAttestationBytes = 2 << 20

// Sentinels of Attestation.Verify beside tpm's ErrQuoteSignature,
// ErrQuoteNonce, ErrQuotePCRs and ErrQuoteMalformed, and ErrMeasurementLog.
var (
	// ErrOtherTrustStore: the quote is genuine, but the last trust store
	// the node measured is not the expected one.
	ErrOtherTrustStore = errors.New("the node enforces another trust store")
	// ErrAttestation: the document does not parse.
	ErrAttestation = errors.New("attestation")
)

// Attestation is what `sealgate attest` prints: a TPM quote over the
// measurement PCR, signed by the node's attestation key over the
// verifier's nonce, with the measurement log that replays to the quoted
// value. Everything in it is the node's claim; Verify checks it against
// what the verifier knows (the attestation key it enrolled, its nonce, the
// trust store it expects).
type Attestation struct {
	Version int `json:"version"`
	// AKPublic is the attestation key (PEM, SubjectPublicKeyInfo), for
	// enrollment; Verify never trusts it.
	AKPublic string `json:"akPublic"`
	// AKName is the key's TPM name, hex.
	AKName string `json:"akName"`
	// Nonce is the challenge the quote answers, hex.
	Nonce string `json:"nonce"`
	// PCR and PCRValue (hex) are the quoted SHA-256 PCR and its value.
	PCR      int    `json:"pcr"`
	PCRValue string `json:"pcrValue"`
	// Quote is the signed TPMS_ATTEST and Signature the TPMT_SIGNATURE
	// over it, base64: tpm2_checkquote's -m and -s files.
	Quote     string `json:"quote"`
	Signature string `json:"signature"`
	// Log is the measurement log; its last event is the trust store the
	// daemon took last.
	Log MeasurementLog `json:"log"`
}

// Attest quotes the measurement PCR of the log at logPath with the TPM's
// attestation key over nonce.
func Attest(q tpm.Quoter, logPath string, nonce []byte) (*Attestation, error) {
	l, err := ReadMeasurementLog(logPath)
	if err != nil {
		return nil, fmt.Errorf("attest: %w (the daemon writes it when it takes a seal; is sealgate running with this --state-dir?)", err)
	}
	ak, err := q.AttestationKey()
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	quote, err := q.Quote([]int{l.PCR}, nonce)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(ak.Public)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	a := &Attestation{
		Version:   attestationVersion,
		AKPublic:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		AKName:    hex.EncodeToString(ak.Name),
		Nonce:     hex.EncodeToString(nonce),
		PCR:       l.PCR,
		PCRValue:  hex.EncodeToString(quote.PCRValues[0]),
		Quote:     base64.StdEncoding.EncodeToString(quote.Message),
		Signature: base64.StdEncoding.EncodeToString(quote.Signature),
		Log:       *l,
	}
	if got, err := l.Replay(); err != nil || !bytes.Equal(got, quote.PCRValues[0]) {
		return a, fmt.Errorf("attest: %w: it does not replay to PCR %d's value %s (another program extended the PCR, or the daemon has not measured since); the quote will not verify until the daemon measures again (restart it)", ErrMeasurementLog, l.PCR, a.PCRValue)
	}
	return a, nil
}

// ParseAttestation reads an attestation document from untrusted bytes,
// strictly.
func ParseAttestation(b []byte) (*Attestation, error) {
	if len(b) > maxAttestationBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrAttestation, len(b), maxAttestationBytes)
	}
	var a Attestation
	if err := strictjson.Unmarshal(b, &a, 8); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	if a.Version != attestationVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrAttestation, a.Version, attestationVersion)
	}
	if err := a.Log.check(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Verify checks the attestation against what the verifier knows: the
// quote is signed by ak (the key enrolled for this node, not the one the
// document carries), answers nonce, covers the log's PCR, the log replays
// to the quoted value, and its last event is trustDigest ("sha256:<hex>").
// Errors wrap the tpm package's quote sentinels, ErrMeasurementLog or
// ErrOtherTrustStore.
func (a *Attestation) Verify(ak *ecdsa.PublicKey, nonce []byte, trustDigest string) error {
	msg, err := base64.StdEncoding.DecodeString(a.Quote)
	if err != nil {
		return fmt.Errorf("%w: quote: %v", tpm.ErrQuoteMalformed, err)
	}
	sig, err := base64.StdEncoding.DecodeString(a.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature: %v", tpm.ErrQuoteMalformed, err)
	}
	if _, err := digestOf(trustDigest); err != nil {
		return fmt.Errorf("expected trust store: %w", err)
	}
	if a.Log.PCR != a.PCR {
		return fmt.Errorf("%w: the log is of PCR %d, the quote of PCR %d", ErrMeasurementLog, a.Log.PCR, a.PCR)
	}
	replayed, err := a.Log.Replay()
	if err != nil {
		return err
	}
	// The quote is checked against the value the log replays to: the
	// document's own pcrValue is only informative.
	if err := tpm.VerifyQuote(ak, msg, sig, nonce, map[int][]byte{a.PCR: replayed}); err != nil {
		if errors.Is(err, tpm.ErrQuotePCRs) {
			return fmt.Errorf("%w: %w: the log does not replay to the quoted PCR %d", ErrMeasurementLog, err, a.PCR)
		}
		return err
	}
	last := a.Log.Last()
	if last == nil {
		return fmt.Errorf("%w: the log has no measurement", ErrOtherTrustStore)
	}
	if last.Digest != trustDigest {
		return fmt.Errorf("%w: it last measured %s (generation %d), not %s", ErrOtherTrustStore, last.Digest, last.Generation, trustDigest)
	}
	return nil
}

// ExpectedPCRValue is the value the log's PCR holds when the node's last
// measurement is trustDigest, as the log says the PCR was before it: the
// PCR file tpm2_checkquote compares a quote with (-f, with -l
// sha256:PCR). A log whose earlier events are false gives a value the
// quote does not match.
func (l *MeasurementLog) ExpectedPCRValue(trustDigest string) ([]byte, error) {
	d, err := digestOf(trustDigest)
	if err != nil {
		return nil, fmt.Errorf("expected trust store: %w", err)
	}
	before := *l
	if n := len(l.Events); n > 0 {
		before.Events = l.Events[:n-1]
	}
	v, err := before.Replay()
	if err != nil {
		return nil, err
	}
	return extendValue(v, d), nil
}
