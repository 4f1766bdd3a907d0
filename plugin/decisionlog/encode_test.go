package decisionlog

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/verdict"
)

// marshal is encoding/json's encoding of e without HTML escaping, which
// appendEntry must reproduce byte for byte.
func marshal(t testing.TB, e *Entry) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendEntryMatchesJSON(t *testing.T) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC)
	tests := []Entry{
		{},
		{Seq: 1, Time: at, Image: "r.example/app:v1", Rule: "app", Mode: "enforce", Verdict: "allow", Source: "cache"},
		{Seq: 18446744073709551615, Prev: "ab", Time: at.In(time.FixedZone("x", 3600)), Runtime: "containerd v2.4.2", Namespace: "ns", Pod: "p", Container: "c",
			Image: "i", Digest: "sha256:00", Rule: "r", Mode: "warn", Verdict: "would-deny", Reasons: []string{"a \"quoted\" \\ reason", "tab\tnew\nline\x01\x1f<>&"},
			Source: "verified", Generation: 7, Lost: 3,
			SatisfiedBy: []verdict.Satisfier{{Authority: "k", KeyID: "sha256:1", SignedAt: at, Kind: "bundle", PredicateType: "https://slsa.dev/provenance/v1", Digest: "sha256:2", Origin: "o", Requirement: "signatures"},
				{Authority: "keyless", Issuer: "https://iss", Subject: "me@example.com", ValidUntil: at}}},
		{Image: "bad utf-8 \xff\xfe and \u2028\u2029 and é 日本"},
	}
	for i, e := range tests {
		got, want := appendEntry(nil, &e), marshal(t, &e)
		if !bytes.Equal(got, want) {
			t.Errorf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzAppendEntry: whatever the strings, appendEntry writes what
// encoding/json writes.
func FuzzAppendEntry(f *testing.F) {
	f.Add("r.example/app:v1", "a reason", "me@example.com", uint64(1))
	f.Add("\x00\xff\u2028\"\\", "<>&", "\t\n", uint64(0))
	f.Fuzz(func(t *testing.T, image, reason, subject string, n uint64) {
		e := Entry{Seq: n, Image: image, Reasons: []string{reason}, Rule: reason, Lost: n,
			SatisfiedBy: []verdict.Satisfier{{Authority: image, Subject: subject}}}
		if got, want := appendEntry(nil, &e), marshal(t, &e); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
