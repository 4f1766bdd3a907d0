package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestQuote: the attestation key is the same from every handle and after a
// reboot; a quote over PCR 23 verifies against its values, nonce and key,
// and fails with another nonce, another PCR value, another key or an
// altered message; every handle is flushed.
func TestQuote(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		q, ok := tp.(Quoter)
		if !ok {
			t.Fatalf("%T is not a Quoter", tp)
		}
		ak, err := q.AttestationKey()
		if err != nil {
			t.Fatal(err)
		}
		noLeaks(t, tp, "AttestationKey")
		digest := sha256.Sum256([]byte("trust store"))
		if err := tp.ExtendPCR(23, digest[:]); err != nil {
			t.Fatal(err)
		}
		nonce := []byte("a fresh challenge from the fleet")
		quote, err := q.Quote([]int{23}, nonce)
		if err != nil {
			t.Fatal(err)
		}
		noLeaks(t, tp, "Quote")
		pcr := quote.PCRValues[0]
		want := sha256.Sum256(append(make([]byte, 32), digest[:]...))
		if !bytes.Equal(pcr, want[:]) {
			t.Fatalf("quoted PCR 23 = %x, want %x", pcr, want)
		}
		if err := VerifyQuote(ak.Public, quote.Message, quote.Signature, nonce, map[int][]byte{23: pcr}); err != nil {
			t.Fatalf("the quote does not verify: %v", err)
		}
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		altered := bytes.Clone(quote.Message)
		altered[len(altered)-1] ^= 1
		tests := []struct {
			name  string
			key   *ecdsa.PublicKey
			msg   []byte
			nonce []byte
			pcrs  map[int][]byte
			want  error
		}{
			{"another nonce (a replay)", ak.Public, quote.Message, []byte("yesterday's challenge"), map[int][]byte{23: pcr}, ErrQuoteNonce},
			{"another PCR value", ak.Public, quote.Message, nonce, map[int][]byte{23: make([]byte, 32)}, ErrQuotePCRs},
			{"another PCR set", ak.Public, quote.Message, nonce, map[int][]byte{16: pcr}, ErrQuotePCRs},
			{"another key", &other.PublicKey, quote.Message, nonce, map[int][]byte{23: pcr}, ErrQuoteSignature},
			{"altered message", ak.Public, altered, nonce, map[int][]byte{23: pcr}, ErrQuoteSignature},
		}
		for _, tc := range tests {
			if err := VerifyQuote(tc.key, tc.msg, quote.Signature, tc.nonce, tc.pcrs); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}

		// Another handle, then a reboot: the same key.
		again, err := h.open(t).(Quoter).AttestationKey()
		if err != nil {
			t.Fatal(err)
		}
		h.reboot(t)
		rebooted, err := h.open(t).(Quoter).AttestationKey()
		if err != nil {
			t.Fatal(err)
		}
		if !ak.Public.Equal(again.Public) || !ak.Public.Equal(rebooted.Public) || !bytes.Equal(ak.Name, rebooted.Name) {
			t.Error("the attestation key changed between handles or across a reboot")
		}
	})
}

// TestQuoteWithCheckquote: tpm2-tools' tpm2_checkquote verifies the quote
// as written (-m message, -s signature, -u the key as PEM and as a TPM2B_PUBLIC,
// -f the PCR values with -l sha256:23, -q the nonce), and refuses it with
// another nonce, other PCR values and another key.
func TestQuoteWithCheckquote(t *testing.T) {
	checkquote := testenv.RequireTool(t, "tpm2_checkquote")
	h := swtpmHarness(t)
	tp := h.open(t)
	q := tp.(Quoter)
	ak, err := q.AttestationKey()
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("trust store"))
	if err := tp.ExtendPCR(23, digest[:]); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("0123456789abcdef")
	quote, err := q.Quote([]int{23}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(ak.Public)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	files := map[string][]byte{
		"ak.pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"ak.pub":    ak.PublicArea,
		"other.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER}),
		"quote.msg": quote.Message,
		"quote.sig": quote.Signature,
		"pcrs.bin":  quote.PCRValues[0],
		"zero.bin":  make([]byte, 32),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(key, pcrs, nonce string) (string, error) {
		out, err := exec.Command(checkquote, "-u", filepath.Join(dir, key), "-m", filepath.Join(dir, "quote.msg"), "-s", filepath.Join(dir, "quote.sig"),
			"-f", filepath.Join(dir, pcrs), "-l", "sha256:23", "-g", "sha256", "-q", nonce).CombinedOutput()
		return string(out), err
	}
	hexNonce := hex.EncodeToString(nonce)
	for _, key := range []string{"ak.pem", "ak.pub"} {
		if out, err := run(key, "pcrs.bin", hexNonce); err != nil {
			t.Fatalf("tpm2_checkquote -u %s: %v\n%s", key, err, out)
		}
	}
	for _, tc := range []struct{ name, key, pcrs, nonce string }{
		{"another nonce", "ak.pem", "pcrs.bin", hex.EncodeToString([]byte("fedcba9876543210"))},
		{"other PCR values", "ak.pem", "zero.bin", hexNonce},
		{"another key", "other.pem", "pcrs.bin", hexNonce},
	} {
		if out, err := run(tc.key, tc.pcrs, tc.nonce); err == nil || !strings.Contains(strings.ToLower(out), "error") {
			t.Errorf("tpm2_checkquote with %s: %v, want a failure\n%s", tc.name, err, out)
		}
	}
}

// FuzzVerifyQuote: a quote and signature from anywhere never panic
// VerifyQuote and never verify under a key that did not sign them.
func FuzzVerifyQuote(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18}, []byte{0x00, 0x18, 0x00, 0x0b}, []byte("nonce"))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, msg, sig, nonce []byte) {
		if err := VerifyQuote(&key.PublicKey, msg, sig, nonce, map[int][]byte{23: make([]byte, 32)}); err == nil {
			t.Fatal("a quote nobody signed verified")
		}
		_, _ = parseQuoteInfo(msg)
	})
}
