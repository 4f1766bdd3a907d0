package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/runtimegate"
	"github.com/sealgate/sealgate/tpm"
)

const trustLong = `The trust store (policy.yaml and the keys, roots and certificates it names)
decides every verdict; sealing binds it to this node's TPM, and the daemon
refuses to start with a trust store that differs from what was sealed.

Exit status: 0 ok, 1 the trust store does not match its seal (or is not
sealed, or the TPM refused), 2 usage or configuration error.`

const trustInitLong = `Writes a starter trust store into DIR (new or empty): policy.yaml in warn
mode, keys/, roots/.`

const trustSealLong = `Checks the policy strictly, seals a fresh key to the TPM at the next trust
generation and writes DIR/sealed.json. Every earlier seal stops opening; a
running daemon is told to take the new seal at once, and measures the trust
store into a PCR as it does (sealgate attest quotes it).

Exit status: 0 sealed, 1 the TPM refused or failed, 2 usage or configuration
error.`

const trustStatusLong = `Says what is sealed, the TPM's trust generation, whether the files on disk
still match, and which PCR holds the measurement. It changes nothing.

Exit status: 0 the trust store would open, 1 it would not (not sealed, files
differ, an older or forged seal record), 2 usage or configuration error.`

func trustInitCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "sealgate trust init: give exactly one DIR (the trust store's folder, usually "+trust.DefaultDir+")")
			return exitUsage
		}
		dir := pos[0]
		if err := trust.Init(dir); err != nil {
			fmt.Fprintf(stderr, "sealgate trust %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "wrote a starter trust store to %s (policy.yaml in warn mode, keys/, roots/).\n", dir)
		fmt.Fprintf(stdout, "Next: put your public keys in %s/keys/, add rules to %s/policy.yaml, then seal it:\n", dir, dir)
		fmt.Fprintf(stdout, "    sealgate trust seal --trust-dir %s\n", dir)
		return exitOK
	}
}

// trustStoreFlags are --trust-dir and --tpm, shared by seal and status.
type trustStoreFlags struct {
	dir, tpm string
}

func (f *trustStoreFlags) register(fs *pflag.FlagSet, stderr io.Writer) {
	fs.StringVar(&f.dir, "trust-dir", trust.DefaultDir, "the trust store's folder")
	deprecatedAlias(fs, "dir", "trust-dir", &f.dir, stderr)
	fs.StringVar(&f.tpm, "tpm", tpm.DefaultDevice, "the TPM: a device (/dev/tpmrm0) or swtpm:HOST:PORT")
}

// open opens the TPM; a failure is a configuration error and says what
// to do (tpm's messages do).
func (f *trustStoreFlags) open(cmd string, stderr io.Writer) (tpm.TPM, bool) {
	t, err := tpm.Open(f.tpm)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate trust %s: %v\n", cmd, err)
		return nil, false
	}
	return t, true
}

func trustSealCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	var tf trustStoreFlags
	tf.register(fs, stderr)
	measure := fs.Int("measure-pcr", trust.DefaultMeasurePCR, "SHA-256 PCR (8-23) the trust store's digest is extended into, for remote attestation; -1 for none")
	gateSocket := fs.String("gate-socket", runtimegate.DefaultSocket, "the running daemon's socket: it is told to take the new seal at once; empty: do not tell it")
	bindList := fs.String("bind-pcrs", "", "comma-separated PCRs (e.g. 7,14) whose current values the key is sealed to; a change of them (firmware, boot loader, Secure Boot) then needs a re-seal")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate trust seal: unexpected argument %q (the trust store is --trust-dir)\n", pos[0])
			return exitUsage
		}
		switch {
		case *measure == 0:
			fmt.Fprintln(stderr, "sealgate trust seal: --measure-pcr 0: PCR 0 holds the firmware's measurements; use 8 to 23, or -1 for none")
			return exitUsage
		case *measure < trust.NoMeasurement:
			fmt.Fprintf(stderr, "sealgate trust seal: --measure-pcr %d: use 8 to 23, or -1 for none\n", *measure)
			return exitUsage
		}
		bind, err := trustParsePCRs(*bindList)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate trust seal: --bind-pcrs: %v\n", err)
			return exitUsage
		}
		t, ok := tf.open("seal", stderr)
		if !ok {
			return exitUsage
		}
		defer t.Close()

		rec, err := trust.Seal(tf.dir, t, trust.SealOptions{MeasurePCR: *measure, BindPCRs: bind})
		t.Close() // the daemon's reload opens the TPM next
		if err != nil {
			fmt.Fprintf(stderr, "sealgate trust %v\n", err)
			switch {
			case rec != nil:
				return exitFailed
			case errors.Is(err, trust.ErrStore), errors.Is(err, trust.ErrOptions), errors.Is(err, policy.ErrInvalid), errors.Is(err, tpm.ErrNoTPM):
				return exitUsage
			}
			return exitFailed
		}
		fmt.Fprintf(stdout, "sealed %s at generation %d: %s (the policy and the files it names), digest %s\n", tf.dir, rec.Generation, plural(len(rec.Files), "file"), rec.Digest)
		if len(rec.BindPCRs) > 0 {
			fmt.Fprintf(stdout, "the key is bound to PCRs %s: after a change of them, seal again\n", trustFormatPCRs(rec.BindPCRs))
		}
		if rec.MeasurePCR != trust.NoMeasurement {
			fmt.Fprintf(stdout, "the daemon measures it into PCR %d when it takes this seal\n", rec.MeasurePCR)
		}
		fmt.Fprintln(stdout, "earlier seals no longer open")
		return tellDaemon(*gateSocket, rec.Generation, stdout, stderr)
	}
}

// tellDaemon asks a running daemon to take the new seal now and says what
// it answered. A daemon that is not running takes the seal when it starts;
// one that refuses keeps deciding with the trust store it has (exit 1).
func tellDaemon(socket string, generation uint64, stdout, stderr io.Writer) int {
	if socket == "" {
		fmt.Fprintln(stdout, "a running sealgate takes the new seal within a second (it watches the sealed files), or at once on SIGHUP")
		return exitOK
	}
	if _, err := os.Stat(socket); err != nil {
		fmt.Fprintf(stdout, "sealgate is not running here (no %s): it enforces this trust store when it starts\n", socket)
		return exitOK
	}
	a, err := runtimegate.Ask(socket, runtimegate.Request{Op: runtimegate.OpReload}, 30*time.Second)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "sealgate trust seal: the running sealgate did not answer on %s (%v); it takes the new seal within a second when it runs (it watches the sealed files): check with sealgate doctor\n", socket, err)
		return exitFailed
	case !a.Allowed:
		fmt.Fprintf(stderr, "sealgate trust seal: the running sealgate REFUSED the new seal and keeps enforcing the trust store it has: %s\n", a.Reason)
		return exitFailed
	case a.Status != nil && a.Status.TrustGeneration != generation:
		fmt.Fprintf(stderr, "sealgate trust seal: the running sealgate enforces generation %d, not %d; check with sealgate doctor\n", a.Status.TrustGeneration, generation)
		return exitFailed
	}
	fmt.Fprintf(stdout, "the running sealgate now enforces generation %d (no restart, the runtime connection kept)\n", generation)
	return exitOK
}

// trustParsePCRs parses "7,14" into ascending PCR indexes.
func trustParsePCRs(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("%q is not a PCR (0 to 23); write them as 7,14", strings.TrimSpace(f))
		}
		out = append(out, n)
	}
	return out, nil
}

func trustFormatPCRs(p []int) string {
	s := make([]string, len(p))
	for i, n := range p {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func trustStatusCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	var tf trustStoreFlags
	tf.register(fs, stderr)
	output := fs.String("output", "text", "output format: text or json")
	state := fs.String("state-dir", node.DefaultStateDir, "the daemon's state folder, where its measurement log is")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate trust status: unexpected argument %q (the trust store is --trust-dir)\n", pos[0])
			return exitUsage
		}
		if *output != "text" && *output != "json" {
			fmt.Fprintf(stderr, "sealgate trust status: --output %q: want text or json\n", *output)
			return exitUsage
		}
		t, ok := tf.open("status", stderr)
		if !ok {
			return exitUsage
		}
		defer t.Close()
		st, err := trust.Status(tf.dir, t, filepath.Join(*state, trust.MeasurementLogName))
		if err != nil {
			fmt.Fprintf(stderr, "sealgate trust %v\n", err)
			return exitUsage
		}
		if *output == "json" {
			out := struct {
				OK bool `json:"ok"`
				*trust.StatusReport
			}{st.OK(), st}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				fmt.Fprintf(stderr, "sealgate trust status: %v\n", err)
				return exitUsage
			}
		} else {
			trustPrintStatus(stdout, st)
		}
		if !st.OK() {
			return exitFailed
		}
		return exitOK
	}
}

func trustPrintStatus(w io.Writer, st *trust.StatusReport) {
	if !st.Sealed {
		fmt.Fprintf(w, "trust store %s: not sealed (TPM trust generation %d)\n", st.Dir, st.Counter)
	} else {
		fmt.Fprintf(w, "trust store %s: sealed at generation %d on %s\n", st.Dir, st.Generation, st.SealedAt.Format("2006-01-02 15:04:05 MST"))
		fmt.Fprintf(w, "  content:     %s (the policy and the files it names), digest %s\n", plural(st.Files, "file"), st.Digest)
		gen := "matches"
		if st.Counter != st.Generation {
			gen = "does NOT match"
		}
		fmt.Fprintf(w, "  TPM counter: %d (%s)\n", st.Counter, gen)
		key := "unsealed"
		if !st.Unsealed {
			key = "does NOT unseal"
		}
		if len(st.BindPCRs) > 0 {
			key += ", bound to PCRs " + trustFormatPCRs(st.BindPCRs)
		}
		fmt.Fprintf(w, "  key:         %s\n", key)
		switch {
		case st.Authentic:
			fmt.Fprintln(w, "  seal record: authentic")
		case st.Unsealed:
			fmt.Fprintln(w, "  seal record: NOT authentic (its MAC fails)")
		default:
			fmt.Fprintln(w, "  seal record: not checked (the key did not unseal)")
		}
		if st.Match {
			fmt.Fprintln(w, "  files:       match the seal")
		} else if len(st.Differences) > 0 {
			fmt.Fprintln(w, "  files:       differ from the seal:")
			for _, d := range st.Differences {
				fmt.Fprintf(w, "                 %-8s %s\n", d.Change, d.Path)
			}
		}
		if m := st.Measurement; m != nil {
			state := "holds this trust store's measurement"
			if !m.Measured {
				state = m.Note
			}
			fmt.Fprintf(w, "  measurement: PCR %d = %s: %s\n", m.PCR, m.Value, state)
		} else {
			fmt.Fprintln(w, "  measurement: none")
		}
	}
	if len(st.Problems) == 0 {
		fmt.Fprintln(w, "ok: the daemon will start with this trust store")
		return
	}
	fmt.Fprintln(w, "the daemon will NOT start with this trust store:")
	for _, p := range st.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}
