package checkproc

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzReadFrame: the daemon reads the verifier's frames, and the verifier
// reads what registries send; whatever it writes, reading a frame ends in
// a message or an error, within the frame bound.
func FuzzReadFrame(f *testing.F) {
	frame := func(s string) []byte {
		b := make([]byte, 4+len(s))
		binary.BigEndian.PutUint32(b, uint32(len(s)))
		copy(b[4:], s)
		return b
	}
	f.Add(frame(`{"id":1,"type":"result","result":{"verdict":{"Allowed":true,"Reasons":["x"],"SatisfiedBy":null,"VerifiedAt":"0001-01-01T00:00:00Z","Clock":0,"Generation":0}}}`))
	f.Add(frame(`{"type":"observe","observe":{"host":"h","took":5}}`))
	f.Add(frame(`{"id":1,"type":"result","result":{"errKind":"unreachable","err":"down"}}`))
	f.Add(frame(`{"id":1,"id":2,"type":"result"}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readFrame(bytes.NewReader(b))
		if err == nil && m == nil {
			t.Fatal("no message and no error")
		}
		if err == nil {
			var out bytes.Buffer
			if werr := writeFrame(&out, m); werr != nil {
				t.Fatalf("a frame read does not write back: %v", werr)
			}
		}
	})
}
