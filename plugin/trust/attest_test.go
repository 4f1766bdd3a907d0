package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testLog() *MeasurementLog {
	return &MeasurementLog{Version: 1, PCR: 23, Start: strings.Repeat("00", 32), Events: []MeasurementEvent{
		{Digest: "sha256:" + strings.Repeat("11", 32), Generation: 1, Time: time.Unix(1700000000, 0).UTC()},
		{Digest: "sha256:" + strings.Repeat("22", 32), Generation: 2, Time: time.Unix(1700000100, 0).UTC()},
	}}
}

// TestMeasurementLogReplay: the log replays as the TPM extends, and the
// expected value for a digest is the log's with that digest last.
func TestMeasurementLogReplay(t *testing.T) {
	l := testLog()
	got, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := hex.DecodeString(strings.Repeat("11", 32))
	d2, _ := hex.DecodeString(strings.Repeat("22", 32))
	want := extendValue(extendValue(make([]byte, 32), d1), d2)
	if !bytes.Equal(got, want) {
		t.Fatalf("replay %x, want %x", got, want)
	}
	if v, err := l.ExpectedPCRValue(l.Last().Digest); err != nil || !bytes.Equal(v, want) {
		t.Errorf("expected value for the last digest %x %v, want the replay", v, err)
	}
	if v, err := l.ExpectedPCRValue("sha256:" + strings.Repeat("33", 32)); err != nil || bytes.Equal(v, want) {
		t.Errorf("expected value for another digest %x %v", v, err)
	}
	if first := ExpectedPCR("sha256:" + strings.Repeat("11", 32)); !bytes.Equal(first, extendValue(make([]byte, 32), d1)) {
		t.Error("ExpectedPCR is not the first measurement's value")
	}
}

// TestParseMeasurementLog: strict, bounded parsing of the log.
func TestParseMeasurementLog(t *testing.T) {
	good, _ := json.Marshal(testLog())
	if _, err := ParseMeasurementLog(good); err != nil {
		t.Fatalf("a good log: %v", err)
	}
	tests := []struct{ name, from, to string }{
		{"unknown key", `"version":1`, `"version":1,"extra":1`},
		{"duplicate key", `"version":1`, `"version":1,"version":1`},
		{"other version", `"version":1`, `"version":2`},
		{"firmware PCR", `"pcr":23`, `"pcr":7`},
		{"short start", `"start":"00`, `"start":"`},
		{"bad digest", `"sha256:11`, `"sha512:11`},
	}
	for _, tc := range tests {
		bad := strings.Replace(string(good), tc.from, tc.to, 1)
		if bad == string(good) {
			t.Fatalf("%s: %q not in %s", tc.name, tc.from, good)
		}
		if _, err := ParseMeasurementLog([]byte(bad)); !errors.Is(err, ErrMeasurementLog) {
			t.Errorf("%s: %v, want ErrMeasurementLog", tc.name, err)
		}
	}
	if _, err := ParseMeasurementLog(bytes.Repeat([]byte(" "), maxMeasurementLogBytes+1)); !errors.Is(err, ErrMeasurementLog) {
		t.Errorf("an oversized log: %v", err)
	}
}

// FuzzParseAttestation: an attestation from anywhere never panics the
// parser or Verify, and never verifies without a quote signed by the key.
func FuzzParseAttestation(f *testing.F) {
	l, _ := json.Marshal(testLog())
	f.Add([]byte(`{"version":1,"akPublic":"","akName":"","nonce":"00","pcr":23,"pcrValue":"","quote":"","signature":"","log":` + string(l) + `}`))
	f.Add(l)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ml, err := ParseMeasurementLog(b); err == nil {
			_, _ = ml.Replay()
		}
		a, err := ParseAttestation(b)
		if err != nil {
			return
		}
		if err := a.Verify(&k.PublicKey, []byte("nonce-nonce"), "sha256:"+strings.Repeat("22", 32)); err == nil {
			t.Fatal("an attestation nobody quoted verified")
		}
	})
}
