package verify

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestParseStatement(t *testing.T) {
	h := strings.TrimPrefix(testDigest, "sha256:")
	subj := `"subject":[{"name":"x","digest":{"sha256":"` + h + `"}}]`
	tests := []struct {
		name    string
		in      string
		wantErr string // "" for success
		check   func(*testing.T, *Statement)
	}{
		{name: "v1 with predicate", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"p","predicate":{"n":1,"list":[true,null,"s"]}}`, check: func(t *testing.T, st *Statement) {
			if st.Type != StatementTypeV1 || st.PredicateType != "p" || !st.Names(testDigest) || st.Names(siblingDigest) {
				t.Errorf("%+v", st)
			}
			if n, ok := st.JSON["predicate"].(map[string]any)["n"].(float64); !ok || n != 1 {
				t.Errorf("numbers must decode as float64 for conditions: %#v", st.JSON["predicate"])
			}
		}},
		{name: "v0.1 without predicate", in: `{"_type":"` + StatementTypeV01 + `",` + subj + `,"predicateType":"p"}`},
		{name: "resource descriptor fields", in: `{"_type":"` + StatementTypeV1 + `","subject":[{"name":"x","uri":"u","digest":{"sha256":"` + h + `"},"mediaType":"m","annotations":{"a":"b"},"downloadLocation":"d","content":"YQ=="}],"predicateType":"p"}`},
		{name: "empty", in: ``, wantErr: "empty"},
		{name: "not an object", in: `[]`, wantErr: "statement is not a JSON object"},
		{name: "unknown type", in: `{"_type":"https://in-toto.io/Statement/v2",` + subj + `,"predicateType":"p"}`, wantErr: `_type "https://in-toto.io/Statement/v2" is not an in-toto statement type`},
		{name: "missing type", in: `{` + subj + `,"predicateType":"p"}`, wantErr: "_type is missing"},
		{name: "missing predicate type", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `}`, wantErr: "predicateType is missing"},
		{name: "empty predicate type", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":""}`, wantErr: "predicateType is empty"},
		{name: "predicate type not a string", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":1}`, wantErr: "predicateType is not a string"},
		{name: "missing subject", in: `{"_type":"` + StatementTypeV1 + `","predicateType":"p"}`, wantErr: "subject is missing"},
		{name: "subject not a list", in: `{"_type":"` + StatementTypeV1 + `","subject":{},"predicateType":"p"}`, wantErr: "subject is not a JSON array"},
		{name: "subject without digest", in: `{"_type":"` + StatementTypeV1 + `","subject":[{"name":"x"}],"predicateType":"p"}`, wantErr: "subject[0].digest is missing"},
		{name: "digest not a string", in: `{"_type":"` + StatementTypeV1 + `","subject":[{"digest":{"sha256":1}}],"predicateType":"p"}`, wantErr: "subject[0].digest.sha256 is not a string"},
		{name: "name not a string", in: `{"_type":"` + StatementTypeV1 + `","subject":[{"name":1,"digest":{}}],"predicateType":"p"}`, wantErr: "subject[0].name is not a string"},
		{name: "unknown subject key", in: `{"_type":"` + StatementTypeV1 + `","subject":[{"Digest":{},"digest":{}}],"predicateType":"p"}`, wantErr: `unknown key "Digest" in subject[0]`},
		{name: "duplicate predicate type", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"a","predicateType":"b"}`, wantErr: `duplicate key "predicateType"`},
		{name: "duplicate key in predicate", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"p","predicate":{"a":1,"a":2}}`, wantErr: `duplicate key "a" in predicate`},
		{name: "number out of range", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"p","predicate":{"a":1e999}}`, wantErr: "number 1e999 out of range in predicate.a"},
		{name: "too deep", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"p","predicate":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, wantErr: "nested deeper than 64"},
		{name: "trailing data", in: `{"_type":"` + StatementTypeV1 + `",` + subj + `,"predicateType":"p"}{}`, wantErr: "data after the top-level value"},
		{name: "invalid UTF-8", in: "{\"_type\":\"\xff\"}", wantErr: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseStatement([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrPayload containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	payload := base64.StdEncoding.EncodeToString([]byte("{}"))
	tests := []struct {
		name, in, wantErr string
	}{
		{name: "cosign's .att layer", in: `{"payloadType":"application/vnd.in-toto+json","payload":"` + payload + `","signatures":[{"keyid":"","sig":"AAAA"}]}`},
		{name: "without keyid", in: `{"payloadType":"x","payload":"` + payload + `","signatures":[{"sig":"AAAA"}]}`},
		{name: "no signatures", in: `{"payloadType":"x","payload":"` + payload + `","signatures":[]}`, wantErr: "0 signatures; want 1 to 8"},
		{name: "payload not base64", in: `{"payloadType":"x","payload":"%%","signatures":[{"sig":"AAAA"}]}`, wantErr: "payload is not base64"},
		{name: "sig not base64", in: `{"payloadType":"x","payload":"","signatures":[{"sig":"%"}]}`, wantErr: "signatures[0].sig is not base64"},
		{name: "empty sig", in: `{"payloadType":"x","payload":"","signatures":[{"sig":""}]}`, wantErr: "signatures[0].sig is not base64"},
		{name: "unknown key", in: `{"payloadType":"x","payload":"","signatures":[{"sig":"AAAA"}],"extra":1}`, wantErr: `unknown key "extra" in envelope`},
		{name: "duplicate payload", in: `{"payloadType":"x","payload":"","payload":"","signatures":[{"sig":"AAAA"}]}`, wantErr: `duplicate key "payload"`},
		{name: "missing payload type", in: `{"payload":"","signatures":[{"sig":"AAAA"}]}`, wantErr: "payloadType is missing"},
		{name: "keyid not a string", in: `{"payloadType":"x","payload":"","signatures":[{"keyid":1,"sig":"AAAA"}]}`, wantErr: "signatures[0].keyid is not a string"},
		{name: "empty", in: ``, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrPayload containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(env.Signatures) != 1 {
				t.Fatalf("env %+v, err %v", env, err)
			}
		})
	}
}

// TestParseAnnotations checks the strict readers of cosign's classic
// annotations.
func TestParseAnnotations(t *testing.T) {
	ts := newTestSigstore(t)
	p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	good := p.classic(t, true)
	e, err := parseRekorBundle(good.RekorBundle)
	if err != nil || e.IntegratedTime().Unix() != ts.now.Unix() || !e.HasInclusionPromise() {
		t.Fatalf("Rekor bundle: %v %+v", err, e)
	}
	if tsr, err := parseTimestamp(good.Timestamp); err != nil || len(tsr) == 0 {
		t.Fatalf("timestamp: %v", err)
	}
	if c, err := parseCertificate(good.Certificate); err != nil || !c.Equal(p.cert) {
		t.Fatalf("certificate: %v", err)
	}
	if cs, err := parseChain(good.Chain); err != nil || len(cs) != 1 {
		t.Fatalf("chain: %v %d", err, len(cs))
	}
	rekor := []struct{ in, want string }{
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0}}`, "Payload.logID is missing"},
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":-1,"logIndex":0,"logID":"00"}}`, "Payload.integratedTime is not a non-negative integer"},
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1.5,"logIndex":0,"logID":"00"}}`, "Payload.integratedTime is not a non-negative integer"},
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":"1","logIndex":0,"logID":"00"}}`, "Payload.integratedTime is not a number"},
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"zz"}}`, `Payload.logID "zz" is not hex`},
		{`{"SignedEntryTimestamp":"","Payload":{}}`, "SignedEntryTimestamp is not base64"},
		{`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"00"}}`, "Payload.body:"},
		{`{"SignedEntryTimestamp":"AA==","signedEntryTimestamp":"AA==","Payload":{}}`, `unknown key "signedEntryTimestamp" in Rekor bundle`},
		{`{"SignedEntryTimestamp":"AA==","SignedEntryTimestamp":"AA==","Payload":{}}`, `duplicate key "SignedEntryTimestamp"`},
	}
	for _, r := range rekor {
		if _, err := parseRekorBundle([]byte(r.in)); err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("Rekor bundle %s: err = %v, want %q", r.in, err, r.want)
		}
	}
	if _, err := parseTimestamp([]byte(`{"SignedRFC3161Timestamp":"AA==","x":1}`)); err == nil || !strings.Contains(err.Error(), `unknown key "x"`) {
		t.Errorf("timestamp with an unknown key: %v", err)
	}
	certs := []struct{ in, want string }{
		{"", "no certificate"},
		{"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n", `PEM block "PUBLIC KEY" is not a CERTIFICATE`},
		{string(good.Certificate) + string(good.Certificate), "more than 1 certificates"},
		{string(good.Certificate) + "trailing", "data that is not PEM"},
		{"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", "certificate annotation: x509"},
	}
	for _, c := range certs {
		if _, err := parseCertificate([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("certificate %q: err = %v, want %q", c.in, err, c.want)
		}
	}
	sig := good
	sig.Certificate = []byte("garbage")
	s, err := classicSigned(sig)
	if err != nil || s.cert || s.certErr == nil {
		t.Errorf("garbage certificate: %v %+v", err, s)
	}
}
