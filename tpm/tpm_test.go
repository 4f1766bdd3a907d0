package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// sealAtNext increments the generation and seals secret to it, as
// `sealgate trust seal` does.
func sealAtNext(t *testing.T, tp TPM, secret []byte, pcrs ...int) (*Sealed, uint64) {
	t.Helper()
	gen, err := tp.IncrementGeneration()
	if err != nil {
		t.Fatalf("increment: %v", err)
	}
	noLeaks(t, tp, "IncrementGeneration")
	s, err := tp.Seal(secret, Policy{Generation: gen, PCRs: pcrs})
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	noLeaks(t, tp, "Seal")
	return s, gen
}

func digestOf(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func TestSealUnsealRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		pcrs   []int
	}{
		{"one byte", []byte{0x42}, nil},
		{"32-byte key", bytes.Repeat([]byte{0xA5}, 32), nil},
		{"largest", bytes.Repeat([]byte{7}, MaxSecretSize), nil},
		{"bound to PCR 16", []byte("k"), []int{16}},
		{"bound to PCRs 23, 16, 16 (unordered, repeated)", []byte("k"), []int{23, 16, 16}},
	}
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s, gen := sealAtNext(t, tp, tc.secret, tc.pcrs...)
				if s.Generation != gen || s.CounterIndex != DefaultCounterIndex {
					t.Errorf("sealed generation %d counter %#x, want %d %#x", s.Generation, s.CounterIndex, gen, DefaultCounterIndex)
				}
				// Through the file format, as the daemon reads it.
				b, err := json.Marshal(s)
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := ParseSealed(b)
				if err != nil {
					t.Fatalf("parse what Seal wrote: %v", err)
				}
				got, err := tp.Unseal(parsed)
				noLeaks(t, tp, "Unseal")
				if err != nil {
					t.Fatalf("unseal: %v", err)
				}
				if !bytes.Equal(got, tc.secret) {
					t.Errorf("unsealed %x, want %x", got, tc.secret)
				}
			})
		}
	})
}

func TestSealRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		// Before the first increment the counter cannot be sealed to.
		if _, err := tp.Seal([]byte("k"), Policy{Generation: 0}); !errors.Is(err, ErrCounterUnset) {
			t.Errorf("seal before any increment: %v, want ErrCounterUnset", err)
		}
		noLeaks(t, tp, "Seal before increment")
		gen := mustIncrement(t, tp)
		gen = mustIncrement(t, tp)
		tests := []struct {
			name    string
			secret  []byte
			p       Policy
			wantErr error
		}{
			{"empty secret", nil, Policy{Generation: gen}, nil},
			{"secret too large", make([]byte, MaxSecretSize+1), Policy{Generation: gen}, nil},
			{"PCR -1", []byte("k"), Policy{Generation: gen, PCRs: []int{-1}}, nil},
			{"PCR 24", []byte("k"), Policy{Generation: gen, PCRs: []int{24}}, nil},
			{"generation behind the counter", []byte("k"), Policy{Generation: gen - 1}, ErrCounterMoved},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tp.Seal(tc.secret, tc.p)
				noLeaks(t, tp, "Seal")
				if err == nil {
					t.Fatal("sealed")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
			})
		}
		// A secret sealed ahead of the counter unseals once it gets there.
		s, err := tp.Seal([]byte("ahead"), Policy{Generation: gen + 1})
		if err != nil {
			t.Fatalf("seal ahead: %v", err)
		}
		if _, err := tp.Unseal(s); !errors.Is(err, ErrCounterMoved) || !strings.Contains(err.Error(), "did not finish") {
			t.Errorf("unseal ahead of the counter: %v, want ErrCounterMoved saying the re-seal did not finish", err)
		}
		mustIncrement(t, tp)
		if got, err := tp.Unseal(s); err != nil || string(got) != "ahead" {
			t.Errorf("unseal once the counter caught up: %q, %v", got, err)
		}
		noLeaks(t, tp, "Unseal")
	})
}

func mustIncrement(t *testing.T, tp TPM) uint64 {
	t.Helper()
	g, err := tp.IncrementGeneration()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestUnsealAfterIncrementFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		s, gen := sealAtNext(t, tp, []byte("old key"))
		next := mustIncrement(t, tp)
		mustIncrement(t, tp)
		_, err := tp.Unseal(s)
		noLeaks(t, tp, "failed Unseal")
		if !errors.Is(err, ErrCounterMoved) {
			t.Fatalf("unseal of a superseded seal: %v, want ErrCounterMoved", err)
		}
		want := fmt.Sprintf("sealed at generation %d, the TPM counter is at %d", gen, next+1)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		// The old blob stays dead even when its file claims the current
		// generation: the TPM compares the counter with the value inside
		// the object's policy.
		forged := *s
		forged.Generation = next + 1
		if _, err := tp.Unseal(&forged); !errors.Is(err, ErrInvalidSealed) {
			t.Errorf("unseal with the generation field rewritten: %v, want ErrInvalidSealed", err)
		}
		noLeaks(t, tp, "forged Unseal")
	})
}

func TestPCRBinding(t *testing.T) {
	tests := []struct {
		name     string
		bind     []int
		extend   int
		wantErr  error
		wantText string
	}{
		{"bound PCR extended", []int{16}, 16, ErrPCRMismatch, "PCR 16 (sealed with"},
		{"bound to two, one extended", []int{16, 23}, 23, ErrPCRMismatch, "PCR 23 (sealed with"},
		{"other PCR extended", []int{23}, 16, nil, ""},
		{"unbound", nil, 16, nil, ""},
	}
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s, _ := sealAtNext(t, tp, []byte("k"), tc.bind...)
				if err := tp.ExtendPCR(tc.extend, digestOf(tc.name)); err != nil {
					t.Fatal(err)
				}
				noLeaks(t, tp, "ExtendPCR")
				got, err := tp.Unseal(s)
				noLeaks(t, tp, "Unseal")
				if tc.wantErr == nil {
					if err != nil || string(got) != "k" {
						t.Fatalf("unseal: %q, %v", got, err)
					}
					return
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("unseal: %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantText) {
					t.Errorf("error %q does not name the PCR (%q)", err, tc.wantText)
				}
			})
		}
	})
}

func TestExtendReadPCR(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		before, err := tp.ReadPCR(16)
		if err != nil {
			t.Fatal(err)
		}
		d := digestOf("trust store")
		if err := tp.ExtendPCR(16, d); err != nil {
			t.Fatal(err)
		}
		after, err := tp.ReadPCR(16)
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(append(append([]byte(nil), before...), d...))
		if !bytes.Equal(after, want[:]) {
			t.Errorf("PCR 16 = %x after extend, want %x", after, want)
		}
		noLeaks(t, tp, "PCR operations")
		bad := []struct {
			name   string
			index  int
			digest []byte
		}{
			{"index -1", -1, d},
			{"index 24", 24, d},
			{"short digest", 16, d[:20]},
			{"empty digest", 16, nil},
		}
		for _, b := range bad {
			if err := tp.ExtendPCR(b.index, b.digest); err == nil {
				t.Errorf("ExtendPCR %s: no error", b.name)
			}
		}
		// PCRs 17 to 22 belong to dynamic launch (localities 3 and 4).
		if err := tp.ExtendPCR(17, d); err == nil || !strings.Contains(err.Error(), "choose a PCR") {
			t.Errorf("ExtendPCR(17) from locality 0: %v, want the locality explained", err)
		}
		noLeaks(t, tp, "failed ExtendPCR")
		for _, i := range []int{-1, 24} {
			if _, err := tp.ReadPCR(i); err == nil {
				t.Errorf("ReadPCR(%d): no error", i)
			}
		}
	})
}

func TestGenerationMonotonic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		g, err := tp.Generation()
		if err != nil || g != 0 {
			t.Fatalf("generation of a fresh TPM: %d, %v; want 0", g, err)
		}
		noLeaks(t, tp, "Generation")
		// Reading does not define the counter.
		if _, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(DefaultCounterIndex)}).Execute(tp.(*device).t); !errors.Is(err, tpm2.TPMRCHandle) {
			t.Errorf("counter defined by a read: %v", err)
		}
		prev := uint64(0)
		for i := range 5 {
			next, err := tp.IncrementGeneration()
			if err != nil {
				t.Fatal(err)
			}
			if next <= prev {
				t.Fatalf("increment %d: %d after %d", i, next, prev)
			}
			if i == 0 && next != 1 {
				t.Errorf("first generation on a fresh TPM is %d, want 1", next)
			}
			got, err := tp.Generation()
			if err != nil || got != next {
				t.Fatalf("Generation() = %d, %v after increment to %d", got, err, next)
			}
			prev = next
		}
		noLeaks(t, tp, "IncrementGeneration")
		// Another handle (the CLI beside the daemon) sees the same counter.
		if g, err := h.open(t).Generation(); err != nil || g != prev {
			t.Errorf("second handle reads %d, %v; want %d", g, err, prev)
		}
	})
}

func TestCounterIndexOption(t *testing.T) {
	const other = 0x0135EA17
	forEachBackend(t, func(t *testing.T, h *harness) {
		def := h.open(t)
		alt := h.open(t, WithCounterIndex(other))
		mustIncrement(t, def)
		mustIncrement(t, def)
		if g, err := alt.Generation(); err != nil || g != 0 {
			t.Fatalf("the other index reads %d, %v; want 0 (a counter of its own)", g, err)
		}
		s, _ := sealAtNext(t, alt, []byte("alt"))
		if s.CounterIndex != other {
			t.Errorf("sealed counter index %#x, want %#x", s.CounterIndex, other)
		}
		if _, err := def.Unseal(s); err == nil || !strings.Contains(err.Error(), "sealed against counter 0x0135ea17") {
			t.Errorf("unseal with the default index: %v, want a counter-index mismatch", err)
		}
		if got, err := alt.Unseal(s); err != nil || string(got) != "alt" {
			t.Errorf("unseal with the index it was sealed to: %q, %v", got, err)
		}
		noLeaks(t, alt, "Unseal")

		if _, err := Open("simulator", WithCounterIndex(0x81000001)); err == nil {
			t.Error("a persistent-object handle was accepted as counter index")
		}
	})
}

func TestForeignIndexAtCounterHandle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		d := tp.(*device)
		// Someone else's ordinary index, writable with its (empty)
		// password, at sealgate's handle: a rollback would be one
		// NV_Write away if sealgate trusted it.
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex:    tpm2.TPMHandle(DefaultCounterIndex),
				NameAlg:    tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
				DataSize:   8,
			}),
		}.Execute(d.t)
		if err != nil {
			t.Fatal(err)
		}
		for name, op := range map[string]func() error{
			"Generation":          func() error { _, err := tp.Generation(); return err },
			"IncrementGeneration": func() error { _, err := tp.IncrementGeneration(); return err },
			"Seal":                func() error { _, err := tp.Seal([]byte("k"), Policy{Generation: 1}); return err },
		} {
			if err := op(); err == nil || !strings.Contains(err.Error(), "not sealgate's trust generation counter") {
				t.Errorf("%s with a foreign index: %v", name, err)
			}
		}
		noLeaks(t, tp, "operations on a foreign index")
	})
}

func TestTamperedSealed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		s, _ := sealAtNext(t, tp, []byte("k"), 16)
		tests := []struct {
			name   string
			mutate func(s *Sealed)
		}{
			{"flipped byte in private", func(s *Sealed) { s.Private[len(s.Private)-1] ^= 1 }},
			{"flipped byte in the public policy", func(s *Sealed) { s.Public[len(s.Public)-3] ^= 1 }},
			{"PCR binding dropped", func(s *Sealed) { s.PCRs, s.PCRValues = nil, nil }},
			{"PCR changed", func(s *Sealed) { s.PCRs = []int{17} }},
			{"recorded PCR value changed", func(s *Sealed) { s.PCRValues[0][0] ^= 1 }},
			{"generation changed", func(s *Sealed) { s.Generation++ }},
			{"public of another object", func(s *Sealed) { s.Public = tpm2.Marshal(tpm2.New2B(tpm2.ECCSRKTemplate)) }},
			{"empty private", func(s *Sealed) { s.Private = nil }},
			{"nil", nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var c *Sealed
				if tc.mutate != nil {
					c = clone(s)
					tc.mutate(c)
				}
				got, err := tp.Unseal(c)
				noLeaks(t, tp, "Unseal")
				if !errors.Is(err, ErrInvalidSealed) {
					t.Fatalf("unseal: %q, %v; want ErrInvalidSealed", got, err)
				}
			})
		}
		// The untouched one still unseals.
		if got, err := tp.Unseal(s); err != nil || string(got) != "k" {
			t.Errorf("unseal: %q, %v", got, err)
		}
	})
}

func clone(s *Sealed) *Sealed {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	var c Sealed
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

func TestSealedOnAnotherTPM(t *testing.T) {
	// Two swtpm instances are two nodes; a blob copied from one does not
	// load on the other even at the same generation.
	a, b := swtpmHarness(t).open(t), swtpmHarness(t).open(t)
	s, gen := sealAtNext(t, a, []byte("node a"))
	for g := uint64(0); g < gen; g++ {
		mustIncrement(t, b)
	}
	_, err := b.Unseal(s)
	noLeaks(t, b, "Unseal")
	if !errors.Is(err, ErrInvalidSealed) || !strings.Contains(err.Error(), "another TPM") {
		t.Errorf("unseal on another TPM: %v, want ErrInvalidSealed naming another TPM", err)
	}
	// And on a TPM without the counter at all.
	c := swtpmHarness(t).open(t)
	if _, err := c.Unseal(s); !errors.Is(err, ErrCounterMoved) || !strings.Contains(err.Error(), "not defined on this TPM") {
		t.Errorf("unseal on a TPM without the counter: %v", err)
	}
}

func TestClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		c1, err := tp.Clock()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		c2, err := tp.Clock()
		if err != nil {
			t.Fatal(err)
		}
		noLeaks(t, tp, "Clock")
		if c2.Clock <= c1.Clock {
			t.Errorf("clock went from %v to %v", c1.Clock, c2.Clock)
		}
		if c2.ResetCount != c1.ResetCount {
			t.Errorf("reset count went from %d to %d without a reboot", c1.ResetCount, c2.ResetCount)
		}
	})
}

func TestRestartAndReboot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		measure := digestOf("trust store digest")
		tp := h.open(t)
		if err := tp.ExtendPCR(16, measure); err != nil {
			t.Fatal(err)
		}
		plain, gen := sealAtNext(t, tp, []byte("plain"))
		bound, err := tp.Seal([]byte("bound"), Policy{Generation: gen, PCRs: []int{16}})
		if err != nil {
			t.Fatal(err)
		}
		c1, err := tp.Clock()
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Generation(); err == nil {
			t.Error("a closed TPM answered")
		}

		// The daemon restarts: a new handle on the same TPM.
		tp = h.open(t)
		for _, s := range []*Sealed{plain, bound} {
			if _, err := tp.Unseal(s); err != nil {
				t.Errorf("unseal after a restart: %v", err)
			}
		}
		noLeaks(t, tp, "Unseal after restart")
		if err := tp.Close(); err != nil {
			t.Fatal(err)
		}

		// The node reboots: PCRs reset, the counter stays.
		h.reboot(t)
		tp = h.open(t)
		if g, err := tp.Generation(); err != nil || g != gen {
			t.Fatalf("generation after reboot: %d, %v; want %d", g, err, gen)
		}
		if got, err := tp.Unseal(plain); err != nil || string(got) != "plain" {
			t.Errorf("unseal after reboot: %q, %v", got, err)
		}
		if _, err := tp.Unseal(bound); !errors.Is(err, ErrPCRMismatch) {
			t.Errorf("PCR-bound unseal before the measurement is repeated: %v, want ErrPCRMismatch", err)
		}
		if err := tp.ExtendPCR(16, measure); err != nil {
			t.Fatal(err)
		}
		if got, err := tp.Unseal(bound); err != nil || string(got) != "bound" {
			t.Errorf("PCR-bound unseal after the measurement: %q, %v", got, err)
		}
		noLeaks(t, tp, "Unseal after reboot")
		c2, err := tp.Clock()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("clock before reboot %+v, after %+v", c1, c2)
		if c2.ResetCount <= c1.ResetCount {
			t.Errorf("reset count %d after reboot, was %d", c2.ResetCount, c1.ResetCount)
		}
	})
}

func TestUnsealDuringLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		s, _ := sealAtNext(t, tp, []byte("k"))
		lockOut(t, tp)
		// The sealed object is NoDA: a TPM in lockout still unseals it.
		if got, err := tp.Unseal(s); err != nil || string(got) != "k" {
			t.Errorf("unseal during lockout: %q, %v", got, err)
		}
		noLeaks(t, tp, "Unseal during lockout")
	})
}

// lockOut puts the TPM into dictionary-attack lockout: one failure allowed,
// then a wrong password on a DA-protected object. It checks that the
// error the TPM then gives translates to ErrLockout.
func lockOut(t *testing.T, tp TPM) {
	t.Helper()
	d := tp.(*device)
	// go-tpm's direct API has no TPM2_DictionaryAttackParameters: the
	// command by hand, authorized by the (empty) lockout password.
	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, 39)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMCCDictionaryAttackParameters))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHLockout))
	cmd = binary.BigEndian.AppendUint32(cmd, 9)                    // authorization area size
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRSPW)) // password session
	cmd = append(cmd, 0, 0, 0, 0, 0)                               // no nonce, no attributes, empty password
	for _, v := range []uint32{1, 1000, 1000} {                    // maxTries, recoveryTime, lockoutRecovery
		cmd = binary.BigEndian.AppendUint32(cmd, v)
	}
	rsp, err := d.t.Send(cmd)
	if err != nil || len(rsp) < 10 || binary.BigEndian.Uint32(rsp[6:10]) != 0 {
		t.Fatalf("set DA parameters: %x, %v", rsp, err)
	}
	k, err := d.createStorageKey()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.flush(k.handle, "storage key"); err != nil {
			t.Error(err)
		}
	}()
	obj, err := tpm2.CreateLoaded{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: []byte("right")},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: []byte("x")}),
		}},
		InPublic: tpm2.New2BTemplate(&tpm2.TPMTPublic{
			Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
		}),
	}.Execute(d.t)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.flush(obj.ObjectHandle, "DA object"); err != nil {
			t.Error(err)
		}
	}()
	var last error
	for range 3 {
		_, last = tpm2.Unseal{ItemHandle: tpm2.AuthHandle{
			Handle: obj.ObjectHandle, Name: obj.Name, Auth: tpm2.PasswordAuth([]byte("wrong")),
		}}.Execute(d.t)
	}
	if !errors.Is(translate(last), ErrLockout) {
		t.Fatalf("after failed authorizations: %v, want it to translate to ErrLockout", last)
	}
}

func TestConcurrentUse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, h *harness) {
		tp := h.open(t)
		s, _ := sealAtNext(t, tp, []byte("k"))
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for range 10 {
			wg.Go(func() {
				if _, err := tp.Clock(); err != nil {
					errs <- err
				}
				if _, err := tp.Unseal(s); err != nil {
					errs <- err
				}
				if _, err := tp.Generation(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		noLeaks(t, tp, "concurrent operations")
	})
}
