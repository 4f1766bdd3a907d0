package runtimegate

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseRuncArgs: any command line either fails or, for a command that
// creates a container, yields an ID that is not a flag.
func FuzzParseRuncArgs(f *testing.F) {
	f.Add("--root\x00/r\x00--log\x00/l\x00--log-format\x00json\x00create\x00--bundle\x00/b\x00--pid-file\x00/p\x00id")
	f.Add("run\x00-b=/x\x00-d\x00id")
	f.Add("restore\x00--image-path\x00/i\x00id")
	f.Add("--weird\x00create\x00id")
	f.Add("state\x00id")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		inv, err := ParseRuncArgs(args)
		if err != nil || !Creates(inv.Command) {
			return
		}
		if inv.ID == "" || strings.HasPrefix(inv.ID, "-") {
			t.Fatalf("ParseRuncArgs(%q) = ID %q", args, inv.ID)
		}
	})
}

// FuzzReadLine: the daemon's reader of requests never panics, and what it
// accepts re-encodes.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte(`{"op":"check","id":"abc","kind":"container","image":"reg/x:1"}` + "\n"))
	f.Add([]byte(`{"op":"status"}` + "\n"))
	f.Add([]byte(`{"op":"check","extra":1}` + "\n"))
	f.Add([]byte(`{"op":"check"} {"op":"x"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := readLine(bytes.NewReader(b), &r); err != nil {
			return
		}
		if r.Op == "" && r.ID == "" && !bytes.Contains(b, []byte("{")) {
			t.Fatalf("accepted %q", b)
		}
	})
}

// FuzzSpecAnnotations: any spec is read or refused, never a panic.
func FuzzSpecAnnotations(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.2.0","annotations":{"io.kubernetes.cri.container-type":"container"}}`))
	f.Add([]byte(`{"annotations":{"a":1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ann, err := parseSpecAnnotations(b)
		if err != nil {
			return
		}
		_ = CheckRequest("id", ann)
		_ = Escaped(ann)
	})
}
