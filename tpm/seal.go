package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// nonceSize is the caller nonce of the sessions this package starts.
const nonceSize = 16

// storageKey is the owner hierarchy's storage key of one operation.
type storageKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

// createStorageKey creates the ECC P-256 storage key from the TCG SRK
// template. The same template under the same owner seed gives the same
// key, so objects sealed under one are loaded under the next; ECC key
// generation takes milliseconds, where RSA takes seconds.
func (d *device) createStorageKey() (*storageKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(d.opts.ownerAuth)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("create storage key: %w", translateOwner(err))
	}
	k := &storageKey{handle: rsp.ObjectHandle, name: rsp.Name}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create storage key: %w", err), d.flush(k.handle, "storage key"))
	}
	k.pub = *pub
	return k, nil
}

// flush flushes a transient object or session.
func (d *device) flush(h tpm2.TPMHandle, what string) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(d.t); err != nil {
		return fmt.Errorf("flush %s %#08x: %w", what, uint32(h), err)
	}
	return nil
}

// flushInto flushes h and joins a failure into *err; deferred, it flushes
// on every path.
func (d *device) flushInto(err *error, h tpm2.TPMHandle, what string) {
	*err = errors.Join(*err, d.flush(h, what))
}

// sealedTemplate is the public area of a sealed secret: a data object
// that only its policy releases (userWithAuth clear), that admin commands
// cannot re-authorize (adminWithPolicy set, and the policy has no
// command-code branch for them), that never leaves this TPM, and whose
// failed authorizations do not count toward dictionary-attack lockout.
func sealedTemplate(authPolicy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:        true,
			FixedParent:     true,
			NoDA:            true,
			AdminWithPolicy: true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: authPolicy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// operand is a generation as PolicyNV compares it with the counter.
func operand(gen uint64) []byte {
	b := make([]byte, counterSize)
	binary.BigEndian.PutUint64(b, gen)
	return b
}

func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	idx := make([]uint, len(pcrs))
	for i, p := range pcrs {
		idx[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
	}}}
}

func (d *device) policyNV(sess tpm2.Session, c *counter, gen uint64) error {
	_, err := tpm2.PolicyNV{
		AuthHandle:    c.authRead(),
		NVIndex:       c.named(),
		PolicySession: sess.Handle(),
		OperandB:      tpm2.TPM2BOperand{Buffer: operand(gen)},
		Offset:        0,
		Operation:     tpm2.TPMEOEq,
	}.Execute(d.t)
	return err
}

func (d *device) policyPCR(sess tpm2.Session, pcrs []int) error {
	if len(pcrs) == 0 {
		return nil
	}
	_, err := tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(pcrs)}.Execute(d.t)
	return err
}

// trialDigest has the TPM compute the policy digest for (generation,
// PCRs at their current values) in a trial session.
func (d *device) trialDigest(c *counter, gen uint64, pcrs []int) (_ []byte, err error) {
	sess, closeSess, err := tpm2.PolicySession(d.t, tpm2.TPMAlgSHA256, nonceSize, tpm2.Trial())
	if err != nil {
		return nil, fmt.Errorf("start trial session: %w", translate(err))
	}
	defer func() {
		if cerr := closeSess(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("flush trial session: %w", cerr))
		}
	}()
	if err := d.policyNV(sess, c, gen); err != nil {
		return nil, fmt.Errorf("trial PolicyNV: %w", translate(err))
	}
	if err := d.policyPCR(sess, pcrs); err != nil {
		return nil, fmt.Errorf("trial PolicyPCR: %w", translate(err))
	}
	rsp, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("policy digest: %w", translate(err))
	}
	return rsp.PolicyDigest.Buffer, nil
}

// expectedDigest computes, without the TPM, the policy digest of a secret
// sealed to (gen, pcrs holding values) against counter c.
func expectedDigest(c *counter, gen uint64, pcrs []int, values [][]byte) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	nv := tpm2.PolicyNV{NVIndex: c.named(), OperandB: tpm2.TPM2BOperand{Buffer: operand(gen)}, Offset: 0, Operation: tpm2.TPMEOEq}
	if err := nv.Update(calc); err != nil {
		return nil, err
	}
	if len(pcrs) > 0 {
		h := sha256.New()
		for _, v := range values {
			h.Write(v)
		}
		pcr := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: pcrSelection(pcrs)}
		if err := pcr.Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// Seal implements TPM.
func (d *device) Seal(secret []byte, p Policy) (_ *Sealed, err error) {
	if len(secret) == 0 || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("seal: secret of %d bytes: want 1 to %d", len(secret), MaxSecretSize)
	}
	pcrs, err := normalizePCRs(p.PCRs)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()

	c, err := d.readCounter()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if !c.written {
		return nil, fmt.Errorf("seal: %w: counter %#08x was never incremented; increment the generation before sealing", ErrCounterUnset, d.opts.counterIndex)
	}
	if p.Generation < c.value {
		return nil, fmt.Errorf("seal: %w: cannot seal for generation %d, the counter is already at %d", ErrCounterMoved, p.Generation, c.value)
	}
	values := make([][]byte, len(pcrs))
	for i, pcr := range pcrs {
		if values[i], err = d.readPCR(pcr); err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
	}
	digest, err := d.trialDigest(c, p.Generation, pcrs)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	// The recorded PCR values must be the ones the TPM bound the policy
	// to, or Unseal would call the file altered.
	want, err := expectedDigest(c, p.Generation, pcrs, values)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if !bytes.Equal(digest, want) {
		return nil, fmt.Errorf("seal: the TPM computed policy digest %x, sealgate expected %x (did a bound PCR change while sealing?); seal again", digest, want)
	}

	k, err := d.createStorageKey()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer d.flushInto(&err, k.handle, "storage key")

	// The secret travels to the TPM encrypted, in a session salted with
	// the storage key.
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: k.handle,
			Name:   k.name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, nonceSize,
				tpm2.AESEncryption(128, tpm2.EncryptIn), tpm2.Salted(k.handle, k.pub)),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(sealedTemplate(digest)),
	}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("seal: create sealed object: %w", translate(err))
	}
	s := &Sealed{
		Public:       tpm2.Marshal(rsp.OutPublic),
		Private:      tpm2.Marshal(rsp.OutPrivate),
		Generation:   p.Generation,
		CounterIndex: d.opts.counterIndex,
	}
	if len(pcrs) > 0 {
		s.PCRs, s.PCRValues = pcrs, values
	}
	if _, err := s.decode(); err != nil {
		return nil, fmt.Errorf("seal: the TPM returned an object sealgate cannot read back: %w", err)
	}
	return s, nil
}

// Unseal implements TPM.
func (d *device) Unseal(s *Sealed) (_ []byte, err error) {
	obj, err := s.decode()
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if s.CounterIndex != 0 && s.CounterIndex != d.opts.counterIndex {
		return nil, fmt.Errorf("unseal: sealed against counter %#08x, but sealgate is set to use %#08x: use the index it was sealed with, or re-seal",
			s.CounterIndex, d.opts.counterIndex)
	}
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()

	c, err := d.readCounter()
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if !c.written {
		return nil, fmt.Errorf("unseal: %w: counter %#08x is not defined on this TPM (the TPM was cleared, or this is another node's sealed file): re-seal the trust store",
			ErrCounterMoved, d.opts.counterIndex)
	}
	// The policy in the object must be the one the file says it was
	// sealed to; otherwise the file was altered, and any explanation of a
	// failure would be built on its lies.
	want, err := expectedDigest(c, s.Generation, s.PCRs, s.PCRValues)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if !bytes.Equal(obj.pub.AuthPolicy.Buffer, want) {
		return nil, fmt.Errorf("unseal: %w: the object's policy does not match the generation %d and PCRs %v recorded with it: the file was altered; restore it or re-seal",
			ErrInvalidSealed, s.Generation, s.PCRs)
	}

	k, err := d.createStorageKey()
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	defer d.flushInto(&err, k.handle, "storage key")

	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *obj.private,
		InPublic:     *obj.public,
	}.Execute(d.t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCLockout) || errors.Is(err, tpm2.TPMRCObjectMemory) {
			return nil, fmt.Errorf("unseal: load: %w", translate(err))
		}
		return nil, fmt.Errorf("unseal: %w: this TPM cannot load the sealed key (%v): it was sealed on another TPM, the TPM was cleared since, or the file was altered; re-seal the trust store",
			ErrInvalidSealed, err)
	}
	defer d.flushInto(&err, loaded.ObjectHandle, "sealed object")

	// The secret comes back encrypted, in a session salted with the
	// storage key.
	sess, closeSess, err := tpm2.PolicySession(d.t, tpm2.TPMAlgSHA256, nonceSize,
		tpm2.Salted(k.handle, k.pub), tpm2.AESEncryption(128, tpm2.EncryptOut))
	if err != nil {
		return nil, fmt.Errorf("unseal: start policy session: %w", translate(err))
	}
	defer func() {
		if cerr := closeSess(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("flush policy session: %w", cerr))
		}
	}()
	if err := d.policyNV(sess, c, s.Generation); err != nil {
		if errors.Is(err, tpm2.TPMRCPolicy) {
			return nil, counterMoved(s.Generation, c.value)
		}
		return nil, fmt.Errorf("unseal: PolicyNV: %w", translate(err))
	}
	if err := d.policyPCR(sess, s.PCRs); err != nil {
		return nil, fmt.Errorf("unseal: PolicyPCR: %w", translate(err))
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: sess}}.Execute(d.t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCPolicyFail) && len(s.PCRs) > 0 {
			return nil, d.pcrMismatch(s)
		}
		return nil, fmt.Errorf("unseal: %w", translate(err))
	}
	return rsp.OutData.Buffer, nil
}

// counterMoved explains a PolicyNV failure.
func counterMoved(sealed, now uint64) error {
	if sealed < now {
		return fmt.Errorf("unseal: %w: sealed at generation %d, the TPM counter is at %d: this trust store was sealed before a later re-seal; restore the current one or re-seal",
			ErrCounterMoved, sealed, now)
	}
	return fmt.Errorf("unseal: %w: sealed for generation %d, the TPM counter is at %d: the re-seal that wrote it did not finish; re-seal",
		ErrCounterMoved, sealed, now)
}

// pcrMismatch explains a policy failure of a PCR-bound secret, naming the
// PCRs that changed.
func (d *device) pcrMismatch(s *Sealed) error {
	var changed []string
	for i, pcr := range s.PCRs {
		v, err := d.readPCR(pcr)
		if err != nil {
			return fmt.Errorf("unseal: %w (and reading PCR %d: %v)", ErrPCRMismatch, pcr, err)
		}
		if !bytes.Equal(v, s.PCRValues[i]) {
			changed = append(changed, fmt.Sprintf("PCR %d (sealed with %x, now %x)", pcr, s.PCRValues[i], v))
		}
	}
	what := "the PCRs"
	if len(changed) > 0 {
		what = strings.Join(changed, ", ")
	}
	return fmt.Errorf("unseal: %w: the secret is bound to PCRs %v and %s changed since sealing (another boot chain, or the PCR was extended since): "+
		"restore the measured state or re-seal", ErrPCRMismatch, s.PCRs, what)
}
