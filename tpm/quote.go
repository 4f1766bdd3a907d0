package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Quoter is the part of a TPM that attests: it signs the values of PCRs
// with an attestation key, for a remote verifier.
type Quoter interface {
	// AttestationKey returns the attestation key's public key and TPM
	// name. The key is the same on every call, on every boot, until the
	// TPM's endorsement seed changes (a TPM clear does not change it).
	AttestationKey() (*AttestationKey, error)
	// Quote signs the current values of the SHA-256 PCRs with the
	// attestation key, over nonce (at most MaxNonceSize bytes, the
	// verifier's freshness challenge).
	Quote(pcrs []int, nonce []byte) (*Quote, error)
}

var _ Quoter = (*device)(nil)

// MaxNonceSize is the largest nonce a quote carries (a SHA-512 digest,
// the TPM's TPM2B_DATA bound on common TPMs).
const MaxNonceSize = 64

// AttestationKey is an attestation key's public part.
type AttestationKey struct {
	// Public is the key (ECDSA P-256).
	Public *ecdsa.PublicKey
	// PublicArea is the key's TPM2B_PUBLIC ("tss" format in tpm2-tools).
	PublicArea []byte
	// Name is the key's TPM name (name algorithm || digest of the public
	// area), what a TPMS_ATTEST names as its signer.
	Name []byte
}

// Quote is a TPM quote as tpm2-tools reads it: tpm2_checkquote -m Message
// -s Signature.
type Quote struct {
	// Message is the TPMS_ATTEST the TPM signed.
	Message []byte
	// Signature is the TPMT_SIGNATURE over Message.
	Signature []byte
	// PCRs are the quoted SHA-256 PCRs, ascending, with their values at
	// the time of the quote, in the same order.
	PCRs      []int
	PCRValues [][]byte
}

// akTemplate is the attestation key: an ECC P-256 restricted signing key
// (ECDSA, SHA-256) that never leaves the TPM, made as a primary key of the
// endorsement hierarchy. The same template under the same endorsement
// seed gives the same key, so the key a fleet enrolls once stays the
// node's and nothing is kept on disk. Restricted, it signs only what the
// TPM produced itself (quotes), never data shaped to look like a quote.
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// createAK creates the attestation key; the caller flushes it.
func (d *device) createAK() (*tpm2.CreatePrimaryResponse, *AttestationKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(d.t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return nil, nil, fmt.Errorf("create attestation key: %w: the endorsement hierarchy has an authorization value set", err)
		}
		return nil, nil, fmt.Errorf("create attestation key: %w", translate(err))
	}
	ak, err := akFromPublic(rsp.OutPublic, rsp.Name)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("create attestation key: %w", err), d.flush(rsp.ObjectHandle, "attestation key"))
	}
	return rsp, ak, nil
}

func akFromPublic(out tpm2.TPM2BPublic, name tpm2.TPM2BName) (*AttestationKey, error) {
	pub, err := out.Contents()
	if err != nil {
		return nil, err
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("attestation key is a %T, want ECDSA", k)
	}
	return &AttestationKey{Public: ec, PublicArea: tpm2.Marshal(out), Name: slices.Clone(name.Buffer)}, nil
}

// AttestationKey implements Quoter.
func (d *device) AttestationKey() (ak *AttestationKey, err error) {
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	rsp, ak, err := d.createAK()
	if err != nil {
		return nil, err
	}
	defer d.flushInto(&err, rsp.ObjectHandle, "attestation key")
	return ak, nil
}

// Quote implements Quoter.
func (d *device) Quote(pcrs []int, nonce []byte) (q *Quote, err error) {
	pcrs, err = normalizePCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if len(pcrs) == 0 {
		return nil, errors.New("quote: no PCR to quote")
	}
	if len(nonce) > MaxNonceSize {
		return nil, fmt.Errorf("quote: nonce of %d bytes, at most %d", len(nonce), MaxNonceSize)
	}
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	rsp, _, err := d.createAK()
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	defer d.flushInto(&err, rsp.ObjectHandle, "attestation key")
	qr, err := tpm2.Quote{
		SignHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      pcrSelection(pcrs),
	}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("quote PCRs %v: %w", pcrs, translate(err))
	}
	q = &Quote{Message: slices.Clone(qr.Quoted.Bytes()), Signature: tpm2.Marshal(&qr.Signature), PCRs: pcrs}
	// The values the quote covers: read after it, and checked against its
	// digest, so that an extend in between is caught here, not by the
	// verifier.
	for _, p := range pcrs {
		v, err := d.readPCR(p)
		if err != nil {
			return nil, fmt.Errorf("quote: %w", err)
		}
		q.PCRValues = append(q.PCRValues, v)
	}
	info, err := parseQuoteInfo(q.Message)
	if err != nil {
		return nil, fmt.Errorf("quote: the TPM's own quote: %w", err)
	}
	if !bytes.Equal(info.digest, PCRDigest(q.PCRValues)) {
		return nil, errors.New("quote: a PCR changed while it was quoted; quote again")
	}
	return q, nil
}

// PCRDigest is the digest a quote carries for PCR values (SHA-256 of
// their concatenation, in ascending PCR order).
func PCRDigest(values [][]byte) []byte {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	return h.Sum(nil)
}

// Sentinels of VerifyQuote, for callers that say which check failed.
var (
	// ErrQuoteSignature: the quote was not signed by the attestation key.
	ErrQuoteSignature = errors.New("quote not signed by the attestation key")
	// ErrQuoteNonce: the quote answers another challenge (a replay).
	ErrQuoteNonce = errors.New("quote nonce differs")
	// ErrQuotePCRs: the quoted PCR values are not the expected ones.
	ErrQuotePCRs = errors.New("quoted PCR values differ")
	// ErrQuoteMalformed: the quote or its signature does not parse.
	ErrQuoteMalformed = errors.New("malformed quote")
)

// quoteInfo is what VerifyQuote reads from a TPMS_ATTEST.
type quoteInfo struct {
	signer []byte
	nonce  []byte
	pcrs   []int
	digest []byte
}

// parseQuoteInfo reads a TPMS_ATTEST of type quote with exactly one
// SHA-256 PCR selection, rejecting trailing bytes.
func parseQuoteInfo(msg []byte) (*quoteInfo, error) {
	if len(msg) > 4096 {
		return nil, fmt.Errorf("%w: attestation of %d bytes", ErrQuoteMalformed, len(msg))
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuoteMalformed, err)
	}
	if !bytes.Equal(tpm2.Marshal(att), msg) {
		return nil, fmt.Errorf("%w: trailing bytes after the attestation", ErrQuoteMalformed)
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("%w: not a TPM-generated quote", ErrQuoteMalformed)
	}
	qi, err := att.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuoteMalformed, err)
	}
	sels := qi.PCRSelect.PCRSelections
	if len(sels) != 1 || sels[0].Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: want one SHA-256 PCR selection", ErrQuoteMalformed)
	}
	var pcrs []int
	for i, b := range sels[0].PCRSelect {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, i*8+bit)
			}
		}
	}
	return &quoteInfo{signer: att.QualifiedSigner.Buffer, nonce: att.ExtraData.Buffer, pcrs: pcrs, digest: qi.PCRDigest.Buffer}, nil
}

// VerifyQuote checks, without a TPM, that msg (a TPMS_ATTEST) is a quote
// signed with ak (sig, a TPMT_SIGNATURE, ECDSA with SHA-256), that it
// answers nonce, and that it covers exactly the SHA-256 PCRs of want
// holding want's values. Errors wrap ErrQuoteMalformed, ErrQuoteSignature,
// ErrQuoteNonce or ErrQuotePCRs.
func VerifyQuote(ak *ecdsa.PublicKey, msg, sig, nonce []byte, want map[int][]byte) error {
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil || len(sig) > 1024 || !bytes.Equal(tpm2.Marshal(s), sig) {
		return fmt.Errorf("%w: signature does not parse as a TPMT_SIGNATURE", ErrQuoteMalformed)
	}
	ec, err := s.Signature.ECDSA()
	if err != nil || ec.Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("%w: not an ECDSA signature with SHA-256", ErrQuoteSignature)
	}
	digest := sha256.Sum256(msg)
	r, sv := new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer)
	if !ecdsa.Verify(ak, digest[:], r, sv) {
		return ErrQuoteSignature
	}
	info, err := parseQuoteInfo(msg)
	if err != nil {
		return err
	}
	if !bytes.Equal(info.nonce, nonce) {
		return fmt.Errorf("%w: the quote answers %x, the challenge was %x", ErrQuoteNonce, info.nonce, nonce)
	}
	idx := make([]int, 0, len(want))
	for p := range want {
		idx = append(idx, p)
	}
	slices.Sort(idx)
	if !slices.Equal(idx, info.pcrs) {
		return fmt.Errorf("%w: the quote covers PCRs %v, want %v", ErrQuotePCRs, info.pcrs, idx)
	}
	values := make([][]byte, len(idx))
	for i, p := range idx {
		values[i] = want[p]
	}
	if !bytes.Equal(info.digest, PCRDigest(values)) {
		return fmt.Errorf("%w: PCRs %v", ErrQuotePCRs, idx)
	}
	return nil
}
