package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
)

const attestLong = `Quotes the PCR that holds the trust store's measurement with the TPM's
attestation key (an ECC P-256 restricted signing key, a primary key of the
endorsement hierarchy: the same key on every call and boot), over the
verifier's --nonce, and prints the attestation as JSON: the quote, its
signature, the key, and the measurement log (in --state-dir) that replays to
the quoted value; its last event is the trust store the daemon took last.
With --out-dir, also the files tpm2_checkquote reads (ak.pem, ak.pub,
quote.msg, quote.sig, pcrs.bin). docs/attestation.md describes the format.

Exit status: 0 quoted, 1 the TPM failed or the log does not replay, 2 usage.`

const attestVerifyLong = `Checks an attestation FILE (from sealgate attest) against what the verifier
knows: the quote is signed by the attestation key --ak (PEM, the key enrolled
for the node; the one in FILE is not trusted), answers --nonce, the
measurement log replays to the quoted PCR, and its last event is the trust
store --trust-digest (sealgate trust status prints it).

Exit status: 0 the node enforces that trust store, 1 it does not (or the
quote is not genuine, or stale), 2 usage or unreadable files.`

const attestExpectedLong = `Writes the value the measurement PCR must hold if the node's last
measurement is --trust-digest, from the log in attestation FILE: the PCR
file tpm2_checkquote compares the quote with (tpm2_checkquote -f FILE
-l sha256:PCR).

Exit status: 0 written, 2 usage or unreadable files.`

// attestGroup is attest itself (it quotes) with its verifier commands.
func attestGroup() group {
	return group{"attest", "Quote the trust store's measurement for a remote verifier", attestLong, []leaf{
		{"verify FILE --ak AK.pem --nonce HEX --trust-digest sha256:HEX", "Check an attestation against the key, the nonce and the expected trust store", attestVerifyLong, attestVerifyCmd},
		{"expected-pcr FILE --trust-digest sha256:HEX -o PCRS.bin", "Write the PCR value tpm2_checkquote expects for a trust store", attestExpectedLong, attestExpectedCmd},
	}, attestCmd}
}

// parseNonce reads a verifier's nonce: hex, 8 to tpm.MaxNonceSize bytes.
func parseNonce(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("--nonce %q: want hex: %v", s, err)
	}
	if len(b) < 8 || len(b) > tpm.MaxNonceSize {
		return nil, fmt.Errorf("--nonce: %d bytes, want 8 to %d (16 to %d hex digits) fresh from the verifier", len(b), tpm.MaxNonceSize, 2*tpm.MaxNonceSize)
	}
	return b, nil
}

func attestCmd(fs *pflag.FlagSet, _ io.Writer) runFunc {
	nonceHex := fs.String("nonce", "", "the verifier's challenge, hex (8 to 64 bytes)")
	tpmSpec := fs.String("tpm", tpm.DefaultDevice, "the TPM: a device (/dev/tpmrm0) or swtpm:HOST:PORT")
	state := fs.String("state-dir", node.DefaultStateDir, "the daemon's state folder, where its measurement log is")
	out := fs.StringP("out", "o", "", "write the attestation JSON to this file instead of standard output")
	outDir := fs.String("out-dir", "", "also write tpm2_checkquote's files into this folder")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate attest: unknown subcommand or argument %q (verify, expected-pcr)\n", pos[0])
			return exitUsage
		}
		nonce, err := parseNonce(*nonceHex)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest: %v\n", err)
			return exitUsage
		}
		t, err := tpm.Open(*tpmSpec)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest: %v\n", err)
			return exitUsage
		}
		defer t.Close()
		q, ok := t.(tpm.Quoter)
		if !ok {
			fmt.Fprintf(stderr, "sealgate attest: the TPM %s cannot quote\n", *tpmSpec)
			return exitUsage
		}
		a, err := trust.Attest(q, filepath.Join(*state, trust.MeasurementLogName), nonce)
		if a == nil {
			fmt.Fprintf(stderr, "sealgate %v\n", err)
			return exitFailed
		}
		data, merr := json.MarshalIndent(a, "", "  ")
		if merr != nil {
			fmt.Fprintf(stderr, "sealgate attest: %v\n", merr)
			return exitFailed
		}
		data = append(data, '\n')
		if *out != "" {
			if werr := os.WriteFile(*out, data, 0o644); werr != nil {
				fmt.Fprintf(stderr, "sealgate attest: %v\n", werr)
				return exitUsage
			}
		} else {
			stdout.Write(data)
		}
		if *outDir != "" {
			if werr := writeCheckquoteFiles(*outDir, a, q); werr != nil {
				fmt.Fprintf(stderr, "sealgate attest: --out-dir: %v\n", werr)
				return exitUsage
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "sealgate %v\n", err)
			return exitFailed
		}
		return exitOK
	}
}

// writeCheckquoteFiles writes the attestation as tpm2-tools reads it.
func writeCheckquoteFiles(dir string, a *trust.Attestation, q tpm.Quoter) error {
	ak, err := q.AttestationKey()
	if err != nil {
		return err
	}
	msg, err := base64.StdEncoding.DecodeString(a.Quote)
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(a.Signature)
	if err != nil {
		return err
	}
	pcr, err := hex.DecodeString(a.PCRValue)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"ak.pem": []byte(a.AKPublic), "ak.pub": ak.PublicArea, "quote.msg": msg, "quote.sig": sig, "pcrs.bin": pcr} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readAttestation reads and parses an attestation file.
func readAttestation(path string) (*trust.Attestation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return nil, err
	}
	a, err := trust.ParseAttestation(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// readAK reads an enrolled attestation key: a PEM public key (P-256).
func readAK(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: want a PEM PUBLIC KEY (the akPublic of an attestation, or ak.pem)", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an ECDSA key", path, k)
	}
	return ec, nil
}

func attestVerifyCmd(fs *pflag.FlagSet, _ io.Writer) runFunc {
	akPath := fs.String("ak", "", "the node's enrolled attestation key (PEM)")
	nonceHex := fs.String("nonce", "", "the challenge this verifier sent, hex")
	digest := fs.String("trust-digest", "", "the trust store the node must enforce: sha256:<hex> (sealgate trust status prints it)")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 || *akPath == "" || *nonceHex == "" || *digest == "" {
			fmt.Fprintln(stderr, "sealgate attest verify: give one FILE and --ak, --nonce and --trust-digest")
			return exitUsage
		}
		nonce, err := parseNonce(*nonceHex)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest verify: %v\n", err)
			return exitUsage
		}
		ak, err := readAK(*akPath)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest verify: --ak: %v\n", err)
			return exitUsage
		}
		a, err := readAttestation(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest verify: %v\n", err)
			if errors.Is(err, trust.ErrAttestation) || errors.Is(err, trust.ErrMeasurementLog) {
				return exitFailed
			}
			return exitUsage
		}
		if err := a.Verify(ak, nonce, *digest); err != nil {
			fmt.Fprintf(stdout, "NOT VERIFIED: %v\n", err)
			return exitFailed
		}
		last := a.Log.Last()
		fmt.Fprintf(stdout, "verified: the node's TPM quotes PCR %d, whose last measurement is trust store %s (generation %d, measured %s)\n",
			a.PCR, last.Digest, last.Generation, last.Time.Format("2006-01-02 15:04:05 MST"))
		return exitOK
	}
}

func attestExpectedCmd(fs *pflag.FlagSet, _ io.Writer) runFunc {
	digest := fs.String("trust-digest", "", "the trust store the node must enforce: sha256:<hex>")
	out := fs.StringP("out", "o", "", "the PCR file to write")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 || *digest == "" || *out == "" {
			fmt.Fprintln(stderr, "sealgate attest expected-pcr: give one FILE and --trust-digest and -o")
			return exitUsage
		}
		a, err := readAttestation(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest expected-pcr: %v\n", err)
			return exitUsage
		}
		v, err := a.Log.ExpectedPCRValue(*digest)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate attest expected-pcr: %v\n", err)
			return exitUsage
		}
		if err := os.WriteFile(*out, v, 0o644); err != nil {
			fmt.Fprintf(stderr, "sealgate attest expected-pcr: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "wrote PCR %d = %x to %s: tpm2_checkquote -f %s -l sha256:%d\n", a.Log.PCR, v, *out, *out, a.Log.PCR)
		return exitOK
	}
}
