package trust

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/tpm"
)

// node is a TPM under test that can be restarted: the daemon restarting
// (same TPM, PCRs kept) or the node rebooting (PCRs reset).
type node struct {
	tpm     tpm.TPM
	restart func(t *testing.T, reboot bool)
}

// backend starts a fresh TPM for one test.
type backend struct {
	name  string
	start func(t *testing.T) *node
}

func fakeBackend() backend {
	return backend{"fake", func(t *testing.T) *node {
		f := newFake()
		n := &node{tpm: f}
		n.restart = func(t *testing.T, reboot bool) {
			cur := n.tpm.(*fakeTPM)
			cur.Close()
			if reboot {
				n.tpm = cur.reboot()
			} else {
				n.tpm = cur.restart()
			}
		}
		return n
	}}
}

// forEachTPM runs fn on every backend: the fake, and those in
// backendsReal (the simulator and swtpm, see tpm_test.go).
func forEachTPM(t *testing.T, fn func(t *testing.T, n *node)) {
	for _, b := range append([]backend{fakeBackend()}, realBackends()...) {
		t.Run(b.name, func(t *testing.T) {
			fn(t, b.start(t))
		})
	}
}

const policyWithKey = `mode: enforce
default: deny
rules:
  - name: infra
    images: ["registry.k8s.io/pause:*"]
    action: allow
  - name: app
    images: ["registry.example.com/app/**"]
    signatures:
      authorities:
        - key: keys/release.pub
`

// newStore writes a trust store: Init's folders and READMEs, a policy
// naming keys/release.pub, and that key.
func newStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sealgate")
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	write(t, dir, PolicyName, policyWithKey)
	write(t, dir, "keys/release.pub", readTestdata(t, "keys/release.pub"))
	return dir
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func seal(t *testing.T, dir string, tp tpm.TPM, o SealOptions) *Record {
	t.Helper()
	rec, err := Seal(dir, tp, o)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return rec
}

func open(t *testing.T, dir string, tp tpm.TPM) *Opened {
	t.Helper()
	o, err := Open(dir, tp)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return o
}

func TestSealRestartOpen(t *testing.T) {
	forEachTPM(t, func(t *testing.T, n *node) {
		dir := newStore(t)
		rec := seal(t, dir, n.tpm, SealOptions{Now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)})
		if rec.Generation != 1 || len(rec.Files) != 2 || rec.MeasurePCR != DefaultMeasurePCR {
			t.Fatalf("record: generation %d, %d files, PCR %d", rec.Generation, len(rec.Files), rec.MeasurePCR)
		}
		for _, reboot := range []bool{false, true} {
			n.restart(t, reboot)
			o := open(t, dir, n.tpm)
			if o.Generation != 1 || o.Record.Digest != rec.Digest || !o.Record.SealedAt.Equal(rec.SealedAt) {
				t.Fatalf("opened generation %d digest %s sealedAt %v", o.Generation, o.Record.Digest, o.Record.SealedAt)
			}
		}
	})
}

// TestOpenRefusesChanges: every kind of change to the trust store makes
// Open refuse, naming the file; a re-seal accepts it.
func TestOpenRefusesChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		want   string
		// broken: the change leaves a store that cannot be sealed again.
		broken bool
	}{
		{"policy names another key", func(t *testing.T, dir string) {
			write(t, dir, "keys/extra.pub", readTestdata(t, "keys/other.pub"))
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "- key: keys/release.pub", "- key: keys/release.pub\n        - key: keys/extra.pub", 1))
		}, "policy.yaml was changed since the trust store was sealed at generation 1; run `sealgate trust seal` to accept it", false},
		{"key edited", func(t *testing.T, dir string) {
			write(t, dir, "keys/release.pub", readTestdata(t, "keys/other.pub"))
		}, "keys/release.pub was changed since the trust store was sealed at generation 1", false},
		{"policy edited", func(t *testing.T, dir string) {
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "mode: enforce", "mode: warn", 1))
		}, "policy.yaml was changed since the trust store was sealed at generation 1", false},
		{"named key removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "keys", "release.pub")); err != nil {
				t.Fatal(err)
			}
		}, "keys/release.pub was removed since the trust store was sealed at generation 1; restore it", true},
		{"one byte flipped at the same size", func(t *testing.T, dir string) {
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "infra", "infrb", 1))
		}, "policy.yaml was changed", false},
		{"key bytes changed at the same size", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "keys", "release.pub")
			b, _ := os.ReadFile(p)
			b[0] ^= 1
			os.WriteFile(p, b, 0o644)
		}, "keys/release.pub was changed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachTPM(t, func(t *testing.T, n *node) {
				dir := newStore(t)
				seal(t, dir, n.tpm, SealOptions{})
				tt.change(t, dir)
				n.restart(t, true)
				_, err := Open(dir, n.tpm)
				if !errors.Is(err, ErrMismatch) {
					t.Fatalf("open after change: %v, want ErrMismatch", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q\nwant it to contain %q", err, tt.want)
				}
				var me *MismatchError
				if !errors.As(err, &me) || len(me.Differences) != 1 {
					t.Errorf("differences: %+v", me)
				}
				if tt.broken {
					return
				}
				rec := seal(t, dir, n.tpm, SealOptions{})
				if rec.Generation != 2 {
					t.Errorf("re-seal at generation %d, want 2", rec.Generation)
				}
				n.restart(t, true)
				if o := open(t, dir, n.tpm); o.Generation != 2 {
					t.Errorf("opened at generation %d", o.Generation)
				}
			})
		})
	}
}

func TestMismatchNamesAllFiles(t *testing.T) {
	dir := newStore(t)
	f := newFake()
	seal(t, dir, f, SealOptions{})
	write(t, dir, PolicyName, strings.Replace(policyWithKey, "mode: enforce", "mode: warn", 1))
	os.Remove(filepath.Join(dir, "keys", "release.pub"))
	_, err := Open(dir, f)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("%v", err)
	}
	want := []Difference{{"keys/release.pub", Removed}, {"policy.yaml", Changed}}
	if len(me.Differences) != 2 || me.Differences[0] != want[0] || me.Differences[1] != want[1] {
		t.Errorf("differences %v, want %v", me.Differences, want)
	}
	if !strings.Contains(err.Error(), "keys/release.pub was removed") || !strings.Contains(err.Error(), "also: policy.yaml changed") {
		t.Errorf("message: %v", err)
	}
}

// TestSealedSetIsWhatThePolicyNames: the policy and the files it names are
// sealed; anything else in the folder (an editor's swap file, notes, a key
// no rule names) is neither sealed nor read, so adding, changing or
// removing it neither stops the daemon nor reaches a decision.
func TestSealedSetIsWhatThePolicyNames(t *testing.T) {
	forEachTPM(t, func(t *testing.T, n *node) {
		dir := newStore(t)
		write(t, dir, ".policy.yaml.swp", "vim swap")
		write(t, dir, "keys/unused.pub", readTestdata(t, "keys/other.pub"))
		rec := seal(t, dir, n.tpm, SealOptions{})
		var got []string
		for _, f := range rec.Files {
			got = append(got, f.Path)
		}
		if strings.Join(got, " ") != "keys/release.pub policy.yaml" {
			t.Fatalf("sealed %v, want the policy and the key it names", got)
		}
		write(t, dir, ".policy.yaml.swp", "changed")
		os.Remove(filepath.Join(dir, "keys", "unused.pub"))
		os.Remove(filepath.Join(dir, "keys", "README"))
		write(t, dir, "notes/todo.txt", "x")
		if err := os.Symlink("/etc/passwd", filepath.Join(dir, "keys", "link.pub")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		n.restart(t, true)
		o := open(t, dir, n.tpm)
		if _, err := o.ReadFile("notes/todo.txt"); !errors.Is(err, ErrNotInStore) {
			t.Errorf("an unsealed file was readable: %v", err)
		}
		if b, err := o.ReadFile(filepath.Join(dir, "keys", "release.pub")); err != nil || string(b) != readTestdata(t, "keys/release.pub") {
			t.Errorf("sealed key: %q %v", b, err)
		}
		if st, err := Status(dir, n.tpm, ""); err != nil || !st.OK() || st.Files != 2 {
			t.Errorf("status: %+v %v", st, err)
		}
		// A sealed file swapped for a link is refused, not followed.
		os.Remove(filepath.Join(dir, "keys", "release.pub"))
		if err := os.Symlink("unused.pub", filepath.Join(dir, "keys", "release.pub")); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, n.tpm); !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "keys/release.pub is a symbolic link") {
			t.Errorf("open with the sealed key swapped for a link: %v", err)
		}
	})
}

// copyDir copies a trust store, as a backup would.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRollbackRefused: a trust store and its seal record restored from
// before a re-seal (a revoked key comes back) are refused: the counter
// moved on. So is the old record alone, or the new record with the old
// files.
func TestRollbackRefused(t *testing.T) {
	tests := []struct {
		name    string
		restore func(t *testing.T, dir, backup string)
		want    error
	}{
		{"store and record", func(t *testing.T, dir, backup string) {
			os.RemoveAll(dir)
			copyDir(t, backup, dir)
		}, tpm.ErrCounterMoved},
		{"record only", func(t *testing.T, dir, backup string) {
			write(t, dir, RecordName, readFile(t, filepath.Join(backup, RecordName)))
		}, tpm.ErrCounterMoved},
		{"store only", func(t *testing.T, dir, backup string) {
			rec := readFile(t, filepath.Join(dir, RecordName))
			os.RemoveAll(dir)
			copyDir(t, backup, dir)
			write(t, dir, RecordName, rec)
		}, ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachTPM(t, func(t *testing.T, n *node) {
				dir := newStore(t)
				write(t, dir, "keys/revoked.pub", readTestdata(t, "keys/other.pub"))
				nameKey(t, dir, "keys/revoked.pub")
				seal(t, dir, n.tpm, SealOptions{})
				backup := filepath.Join(t.TempDir(), "backup")
				copyDir(t, dir, backup)
				write(t, dir, PolicyName, policyWithKey)
				os.Remove(filepath.Join(dir, "keys", "revoked.pub"))
				seal(t, dir, n.tpm, SealOptions{})
				tt.restore(t, dir, backup)
				n.restart(t, true)
				_, err := Open(dir, n.tpm)
				if !errors.Is(err, tt.want) {
					t.Fatalf("open: %v, want %v", err, tt.want)
				}
				if tt.want == tpm.ErrCounterMoved && !strings.Contains(err.Error(), "sealed at generation 1 but the TPM counter is at 2: an older trust store or seal record was restored; restore the current one or run `sealgate trust seal`") {
					t.Errorf("message: %v", err)
				}
				if tt.want == ErrMismatch && !strings.Contains(err.Error(), "policy.yaml was changed") {
					t.Errorf("message: %v", err)
				}
			})
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestForgedRecord: someone who can write the disk but does not hold the
// TPM edits sealed.json consistently (it still parses, its digest matches
// its file list) but cannot recompute the MAC.
func TestForgedRecord(t *testing.T) {
	tests := []struct {
		name  string
		forge func(t *testing.T, dir string, r *Record)
	}{
		{"file list with an added key", func(t *testing.T, dir string, r *Record) {
			write(t, dir, "keys/extra.pub", readTestdata(t, "keys/other.pub"))
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "- key: keys/release.pub", "- key: keys/release.pub\n        - key: keys/extra.pub", 1))
			files, _, err := readSet(dir)
			if err != nil {
				t.Fatal(err)
			}
			r.Files = files
		}},
		{"file list with an edited policy", func(t *testing.T, dir string, r *Record) {
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "default: deny", "default: allow", 1))
			files, _, err := readSet(dir)
			if err != nil {
				t.Fatal(err)
			}
			r.Files = files
		}},
		{"sealedAt", func(t *testing.T, dir string, r *Record) { r.SealedAt = r.SealedAt.Add(time.Hour) }},
		{"measure PCR", func(t *testing.T, dir string, r *Record) { r.MeasurePCR = NoMeasurement }},
		{"mac", func(t *testing.T, dir string, r *Record) {
			flip := map[byte]string{'0': "1"}[r.MAC[0]]
			if flip == "" {
				flip = "0"
			}
			r.MAC = flip + r.MAC[1:]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachTPM(t, func(t *testing.T, n *node) {
				dir := newStore(t)
				r := seal(t, dir, n.tpm, SealOptions{})
				tt.forge(t, dir, r)
				var err error
				if r.Digest, err = StoreDigest(r.Files); err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(r)
				write(t, dir, RecordName, string(b))
				if _, err := ParseRecord(b); err != nil {
					t.Fatalf("the forged record does not even parse: %v", err)
				}
				_, err = Open(dir, n.tpm)
				if !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), "does not match its MAC") {
					t.Fatalf("open: %v, want ErrRecord (MAC)", err)
				}
				st, err := Status(dir, n.tpm, "")
				if err != nil || st.OK() || st.Authentic {
					t.Errorf("status: %+v, %v", st, err)
				}
			})
		})
	}
}

// TestSealedKeyFromAnotherSeal: the sealed blob of one trust store pasted
// into the record of another (same generation cannot happen on one TPM, so
// the blob unseals to another K): the MAC fails.
func TestSealedKeyFromAnotherSeal(t *testing.T) {
	f := newFake()
	a, b := newStore(t), newStore(t)
	seal(t, a, f, SealOptions{})
	rb := seal(t, b, f, SealOptions{})
	ra, err := readRecord(a)
	if err != nil {
		t.Fatal(err)
	}
	// Give a's record b's sealed key (generation 2, which the counter holds).
	ra.Sealed, ra.Generation = rb.Sealed, rb.Generation
	data, _ := json.Marshal(ra)
	write(t, a, RecordName, string(data))
	if _, err := Open(a, f); !errors.Is(err, ErrRecord) {
		t.Fatalf("open: %v, want ErrRecord", err)
	}
}

func TestSealRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		opts  SealOptions
		is    error
		want  string
	}{
		{"invalid policy", func(t *testing.T, dir string) {
			write(t, dir, PolicyName, policyWithKey+"    acton: allow\n")
		}, SealOptions{}, ErrStore, "policy.yaml:12"},
		{"policy without its key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "keys", "release.pub"))
		}, SealOptions{}, policy.ErrInvalid, "does not exist"},
		{"no policy", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, PolicyName))
		}, SealOptions{}, ErrStore, "policy"},
		{"key outside the store", func(t *testing.T, dir string) {
			outside := filepath.Join(t.TempDir(), "outside.pub")
			os.WriteFile(outside, []byte(readTestdata(t, "keys/release.pub")), 0o644)
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "keys/release.pub", outside, 1))
		}, SealOptions{}, ErrStore, "outside the trust store"},
		{"key outside the store by ..", func(t *testing.T, dir string) {
			write(t, filepath.Dir(dir), "up.pub", readTestdata(t, "keys/release.pub"))
			write(t, dir, PolicyName, strings.Replace(policyWithKey, "keys/release.pub", "../up.pub", 1))
		}, SealOptions{}, ErrStore, "outside the trust store"},
		{"symbolic link", func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "keys", "link.pub")); err != nil {
				t.Fatal(err)
			}
			nameKey(t, dir, "keys/link.pub")
		}, SealOptions{}, ErrStore, "keys/link.pub is a symbolic link"},
		{"symbolic link to a folder", func(t *testing.T, dir string) {
			other := t.TempDir()
			write(t, other, "k.pub", readTestdata(t, "keys/release.pub"))
			if err := os.Symlink(other, filepath.Join(dir, "more")); err != nil {
				t.Fatal(err)
			}
			nameKey(t, dir, "more/k.pub")
		}, SealOptions{}, ErrStore, "more is a symbolic link"},
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "keys", "pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
			nameKey(t, dir, "keys/pipe")
		}, SealOptions{}, ErrStore, "keys/pipe is not a regular file"},
		{"policy too large", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, PolicyName), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(maxFileSize + 1)
			f.Close()
		}, SealOptions{}, ErrStore, "policy.yaml is larger than"},
		{"control character in a name", func(t *testing.T, dir string) {
			write(t, dir, "keys/a\nb.pub", "x")
			nameKey(t, dir, `"keys/a\nb.pub"`)
		}, SealOptions{}, ErrStore, `"keys/a\nb.pub"`},
		{"measure and bind the same PCR", nil, SealOptions{MeasurePCR: 16, BindPCRs: []int{7, 16}}, ErrOptions, "PCR 16 is both measured into and bound to"},
		{"default measure PCR bound", nil, SealOptions{BindPCRs: []int{23}}, ErrOptions, "PCR 23 is both measured into and bound to"},
		{"firmware PCR measured", nil, SealOptions{MeasurePCR: 7}, ErrOptions, "measurement PCR 7"},
		{"bind PCR out of range", nil, SealOptions{BindPCRs: []int{24}}, ErrOptions, "bind PCR 24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newStore(t)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			f := newFake()
			_, err := Seal(dir, f, tt.opts)
			if err == nil {
				t.Fatal("sealed")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if g, _ := f.Generation(); g != 0 {
				t.Errorf("a refused seal moved the counter to %d", g)
			}
			if _, err := os.Lstat(filepath.Join(dir, RecordName)); err == nil {
				t.Error("a refused seal wrote a record")
			}
		})
	}
}

func TestSealLocks(t *testing.T) {
	dir := newStore(t)
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	if _, err := Seal(dir, f, SealOptions{}); err == nil || !strings.Contains(err.Error(), "another `sealgate trust seal` is sealing") {
		t.Fatalf("seal while another holds the lock: %v", err)
	}
	unlock()
	seal(t, dir, f, SealOptions{})
	if _, err := Seal(filepath.Join(dir, "nope"), f, SealOptions{}); !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "sealgate trust init") {
		t.Errorf("seal of a missing folder: %v", err)
	}
}

func TestOpenedDoesNotPrintKey(t *testing.T) {
	dir := newStore(t)
	f := newFake()
	seal(t, dir, f, SealOptions{})
	o := open(t, dir, f)
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o)} {
		if strings.Contains(s, hex.EncodeToString(o.key)) || strings.Contains(s, fmt.Sprint(o.key)) || !strings.Contains(s, "generation 1") {
			t.Errorf("formatted Opened: %s", s)
		}
	}
}

func TestSealRemovesLeftoverTemp(t *testing.T) {
	dir := newStore(t)
	write(t, dir, tmpRecordName, "torn")
	f := newFake()
	seal(t, dir, f, SealOptions{})
	if _, err := os.Stat(filepath.Join(dir, tmpRecordName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temp file: %v", err)
	}
	open(t, dir, f)
}

// TestMeasure: sealing measures nothing; the daemon measures the store it
// takes, once (a restart does not extend again), chains a re-seal and logs
// each measurement so that the log replays to the PCR; after a reboot the
// log starts again from zero, and a lost log starts again from the PCR's
// value. Status reads the log.
func TestMeasure(t *testing.T) {
	forEachTPM(t, func(t *testing.T, n *node) {
		dir := newStore(t)
		logPath := filepath.Join(t.TempDir(), MeasurementLogName)
		zero := make([]byte, 32)
		before16, err := n.tpm.ReadPCR(16)
		if err != nil {
			t.Fatal(err)
		}
		pcr := func() []byte {
			t.Helper()
			v, err := n.tpm.ReadPCR(DefaultMeasurePCR)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		rec := seal(t, dir, n.tpm, SealOptions{})
		if got := pcr(); !bytes.Equal(got, zero) {
			t.Fatalf("PCR 23 after seal %x: sealing must not measure", got)
		}
		o := open(t, dir, n.tpm)
		measure := func(o *Opened, wantExtended bool, wantRestart string) {
			t.Helper()
			res, err := o.Measure(n.tpm, logPath)
			if err != nil || res.Extended != wantExtended || !strings.Contains(res.Restarted, wantRestart) || (wantRestart == "") != (res.Restarted == "") {
				t.Fatalf("measure: %+v %v, want extended %v, restarted %q", res, err, wantExtended, wantRestart)
			}
			l, err := ReadMeasurementLog(logPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := l.Replay(); err != nil || !bytes.Equal(got, pcr()) || l.Last().Digest != o.Record.Digest {
				t.Fatalf("the log %+v does not replay to PCR 23 %x ending with %s: %x %v", l, pcr(), o.Record.Digest, got, err)
			}
		}
		measure(o, true, "reset value")
		measure(o, false, "") // a daemon restart
		if got := pcr(); !bytes.Equal(got, ExpectedPCR(rec.Digest)) {
			t.Fatalf("PCR 23 after the first measurement %x, want %x", got, ExpectedPCR(rec.Digest))
		}
		st, err := Status(dir, n.tpm, logPath)
		if err != nil || !st.OK() || st.Measurement == nil || !st.Measurement.Measured || st.Measurement.PCR != 23 || st.Measurement.Log != logPath {
			t.Fatalf("status %+v %v", st.Measurement, err)
		}
		// A re-seal: not measured until taken, then chained.
		policy, err := os.ReadFile(filepath.Join(dir, PolicyName))
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, PolicyName, string(policy)+"# generation 2\n")
		rec2 := seal(t, dir, n.tpm, SealOptions{})
		st, err = Status(dir, n.tpm, logPath)
		if err != nil || !st.OK() || st.Measurement.Measured || !strings.Contains(st.Measurement.Note, "has not taken this seal") {
			t.Fatalf("status after re-seal %+v %v", st.Measurement, err)
		}
		o2 := open(t, dir, n.tpm)
		measure(o2, true, "")
		if l, _ := ReadMeasurementLog(logPath); len(l.Events) != 2 || l.Events[0].Digest != rec.Digest || l.Events[1].Digest != rec2.Digest || l.Events[1].Generation != 2 {
			t.Fatalf("log after the re-seal: %+v", l)
		}
		if st, err = Status(dir, n.tpm, logPath); err != nil || !st.Measurement.Measured {
			t.Fatalf("status after the re-seal was taken %+v %v", st.Measurement, err)
		}
		// The log lost: it starts again from the PCR's value.
		if err := os.Remove(logPath); err != nil {
			t.Fatal(err)
		}
		measure(o2, true, "no measurement log")
		// Another program extends the PCR: the log no longer replays.
		if err := n.tpm.ExtendPCR(DefaultMeasurePCR, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		measure(o2, true, "does not account for")
		// A reboot: the log starts from zero with one event.
		n.restart(t, true)
		measure(open(t, dir, n.tpm), true, "reset value")
		if got := pcr(); !bytes.Equal(got, ExpectedPCR(rec2.Digest)) {
			t.Fatalf("PCR 23 after the reboot %x, want %x", got, ExpectedPCR(rec2.Digest))
		}
		// Another PCR: 16; none: PCR untouched.
		dir2 := newStore(t)
		seal(t, dir2, n.tpm, SealOptions{MeasurePCR: NoMeasurement})
		if res, err := open(t, dir2, n.tpm).Measure(n.tpm, filepath.Join(t.TempDir(), "m.json")); err != nil || res.Extended {
			t.Errorf("no measurement PCR: %+v %v", res, err)
		}
		if got, _ := n.tpm.ReadPCR(16); !bytes.Equal(got, before16) {
			t.Errorf("PCR 16 moved")
		}
		seal(t, dir2, n.tpm, SealOptions{MeasurePCR: 16})
		if res, err := open(t, dir2, n.tpm).Measure(n.tpm, filepath.Join(t.TempDir(), "m.json")); err != nil || !res.Extended {
			t.Errorf("PCR 16: %+v %v", res, err)
		}
		if got, _ := n.tpm.ReadPCR(16); bytes.Equal(got, before16) {
			t.Errorf("PCR 16 not measured")
		}
	})
}

// TestBindPCRs: a key bound to a PCR unseals only while the PCR holds its
// value at sealing; the error says what to do.
func TestBindPCRs(t *testing.T) {
	forEachTPM(t, func(t *testing.T, n *node) {
		dir := newStore(t)
		rec := seal(t, dir, n.tpm, SealOptions{BindPCRs: []int{16, 16}})
		if len(rec.BindPCRs) != 1 || rec.BindPCRs[0] != 16 {
			t.Fatalf("bind PCRs %v", rec.BindPCRs)
		}
		open(t, dir, n.tpm)
		if err := n.tpm.ExtendPCR(16, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, n.tpm)
		if !errors.Is(err, tpm.ErrPCRMismatch) || !strings.Contains(err.Error(), "bound to PCRs 16") {
			t.Fatalf("open after extend: %v", err)
		}
		n.restart(t, true)
		open(t, dir, n.tpm)
	})
}

func TestDeriveKey(t *testing.T) {
	dir := newStore(t)
	f := newFake()
	seal(t, dir, f, SealOptions{})
	o1, o2 := open(t, dir, f), open(t, dir, f.restart())
	a, b := o1.DeriveKey("sealgate verdict cache v1"), o2.DeriveKey("sealgate verdict cache v1")
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("derived keys differ across opens: %x %x", a, b)
	}
	if bytes.Equal(a, o1.DeriveKey("other")) {
		t.Error("two purposes, one key")
	}
	seal(t, dir, f, SealOptions{})
	if bytes.Equal(a, open(t, dir, f).DeriveKey("sealgate verdict cache v1")) {
		t.Error("a re-seal kept the derived key: verdicts of the older seal would still verify")
	}
}

func TestStatus(t *testing.T) {
	forEachTPM(t, func(t *testing.T, n *node) {
		dir := newStore(t)
		st, err := Status(dir, n.tpm, "")
		if err != nil || st.Sealed || st.OK() || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "run `sealgate trust seal") {
			t.Fatalf("unsealed store: %+v %v", st, err)
		}
		rec := seal(t, dir, n.tpm, SealOptions{BindPCRs: []int{16}})
		n.restart(t, false)
		st, err = Status(dir, n.tpm, "")
		if err != nil || !st.OK() || st.Generation != 1 || st.Counter != 1 || st.Files != 2 || st.Digest != rec.Digest || !st.SealedAt.Equal(rec.SealedAt) || len(st.BindPCRs) != 1 {
			t.Fatalf("sealed store: %+v %v", st, err)
		}
		write(t, dir, "keys/release.pub", readTestdata(t, "keys/other.pub"))
		st, err = Status(dir, n.tpm, "")
		if err != nil || st.OK() || st.Match || !st.Authentic || len(st.Differences) != 1 || st.Differences[0] != (Difference{"keys/release.pub", Changed}) {
			t.Fatalf("changed store: %+v %v", st, err)
		}
		// Another seal elsewhere moves the counter: this one no longer unseals.
		other := newStore(t)
		seal(t, other, n.tpm, SealOptions{})
		st, err = Status(dir, n.tpm, "")
		if err != nil || st.OK() || st.Unsealed || st.Counter != 2 || !strings.Contains(strings.Join(st.Problems, "\n"), "sealed at generation 1 but the TPM counter is at 2") {
			t.Fatalf("counter moved: %+v %v", st, err)
		}
		// JSON for `trust status --output json`.
		b, err := json.Marshal(st)
		if err != nil || !strings.Contains(string(b), `"counter":2`) {
			t.Errorf("json %s %v", b, err)
		}
	})
}

func TestStatusMalformedRecord(t *testing.T) {
	dir := newStore(t)
	write(t, dir, RecordName, "{")
	st, err := Status(dir, newFake(), "")
	if err != nil || st.Sealed || st.OK() || !strings.Contains(st.Problems[0], "invalid seal record") {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := Open(dir, newFake()); !errors.Is(err, ErrRecord) {
		t.Fatalf("open: %v", err)
	}
}

func TestOpenNotSealed(t *testing.T) {
	dir := newStore(t)
	_, err := Open(dir, newFake())
	if !errors.Is(err, ErrNotSealed) || !strings.Contains(err.Error(), "run `sealgate trust seal --trust-dir "+dir+"`") {
		t.Fatalf("%v", err)
	}
	// A link in place of the record is not followed.
	os.Symlink("/etc/passwd", filepath.Join(dir, RecordName))
	if _, err := Open(dir, newFake()); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("%v", err)
	}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "sealgate")
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{PolicyName, "keys/README", "roots/README"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	p, err := policy.Load(filepath.Join(dir, PolicyName))
	if err != nil {
		t.Fatalf("the starter policy does not parse: %v", err)
	}
	if p.Mode != policy.ModeWarn || p.Default != policy.ActionDeny || len(p.Rules) != 1 || p.Rules[0].Action != policy.ActionAllow {
		t.Errorf("starter policy: mode %s default %s rules %d", p.Mode, p.Default, len(p.Rules))
	}
	img, _ := policy.ParseImage("registry.k8s.io/pause:3.10")
	if r := p.Match(img, "kube-system"); r == nil || r.Name != "infra" {
		t.Errorf("pause does not match the infra rule")
	}
	// Init, seal, open.
	f := newFake()
	seal(t, dir, f, SealOptions{})
	open(t, dir, f.reboot())
	// Init refuses a non-empty folder, also the one it wrote.
	if err := Init(dir); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("init over a trust store: %v", err)
	}
	// An empty existing folder is fine.
	if err := Init(t.TempDir()); err != nil {
		t.Error(err)
	}
}

// TestInitExampleRule: the commented example rule parses once uncommented,
// with its key and trusted root in place.
func TestInitExampleRule(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, filepath.Join(dir, PolicyName))
	var out []string
	uncomment := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# trustedRoot:"):
			line = strings.TrimPrefix(line, "# ")
		case strings.HasPrefix(line, "  # - name: myorg"):
			uncomment = true
		}
		if uncomment && strings.HasPrefix(line, "  # ") {
			line = "  " + strings.TrimPrefix(line, "  # ")
		}
		out = append(out, line)
	}
	write(t, dir, PolicyName, strings.Join(out, "\n"))
	write(t, dir, "keys/release.pub", readTestdata(t, "keys/release.pub"))
	write(t, dir, "roots/trusted_root.json", readTestdata(t, "roots/trusted_root.json"))
	p, err := policy.Load(filepath.Join(dir, PolicyName))
	if err != nil {
		t.Fatalf("the example rule does not parse: %v", err)
	}
	if len(p.Rules) != 2 || p.Rules[1].Name != "myorg" || len(p.Rules[1].Signatures.Authorities) != 2 {
		t.Fatalf("rules %+v", p.Rules)
	}
	f := newFake()
	seal(t, dir, f, SealOptions{})
	open(t, dir, f)
}

// nameKey makes the test policy name another key file (a YAML scalar).
func nameKey(t *testing.T, dir, key string) {
	t.Helper()
	write(t, dir, PolicyName, strings.Replace(policyWithKey, "- key: keys/release.pub", "- key: keys/release.pub\n        - key: "+key, 1))
}

// TestStoreDigestPinned pins the digest's framing: a remote verifier
// recomputes it from the files to read a PCR quote, so it must not change.
func TestStoreDigestPinned(t *testing.T) {
	files := []File{
		{Path: "keys/release.pub", SHA256: strings.Repeat("ab", 32), Size: 178},
		{Path: "policy.yaml", SHA256: strings.Repeat("01", 32), Size: 42},
	}
	got, err := StoreDigest(files)
	if err != nil {
		t.Fatal(err)
	}
	const want = "sha256:db74de8c3c8237d0c3e0ecb7322507181fbecc5ba45557842857f2f49befab36"
	if got != want {
		t.Errorf("StoreDigest = %s, want %s", got, want)
	}
	// Moving a byte between the path and the size changes the digest.
	files2 := []File{{Path: "keys/release.pu", SHA256: files[0].SHA256, Size: 178}, files[1]}
	if d, _ := StoreDigest(files2); d == got {
		t.Error("framing collision")
	}
	if d, _ := StoreDigest(nil); d == got || !strings.HasPrefix(d, "sha256:") {
		t.Errorf("empty store digest %s", d)
	}
}
