// Package checkproc runs the slow path of decisions (a decision.Checker)
// in a child process, the verifier: the daemon that holds verdicts and
// answers the runtime then links neither the registry client nor the
// Sigstore verifier, and what registries send is read in a process that
// can die, hang or be killed without taking the gate with it.
//
// The two processes speak length-prefixed JSON frames over the child's
// stdin and stdout. The parent sends Init once, then checks and picks,
// each with an ID and the time it may take; the child answers each with
// a result of the same ID, in any order, and reports registry requests as
// they happen (for metrics).
package checkproc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/policy"
)

// maxFrame bounds one frame: Init carries the policy and its files (trusted
// roots are tens of KiB), results a verdict.
const maxFrame = 16 << 20

// Init is what the verifier is started with: the policy exactly as the
// parent parsed it (from the sealed trust store on a TPM node), so that
// the child enforces the same Digest without reading anything again, and
// the configuration of the sources, opaque here.
type Init struct {
	PolicyPath   string            `json:"policyPath"`
	Policy       []byte            `json:"policy"`
	Files        map[string][]byte `json:"files"`
	PolicyDigest string            `json:"policyDigest"`
	Sources      json.RawMessage   `json:"sources,omitempty"`
}

// InitFor is the Init of p with the sources' configuration src.
func InitFor(p *policy.Policy, src json.RawMessage) Init {
	files := make(map[string][]byte)
	for _, f := range p.Files() {
		if b, ok := p.FileData(f); ok {
			files[f] = b
		}
	}
	return Init{PolicyPath: p.Path, Policy: p.Bytes(), Files: files, PolicyDigest: p.Digest, Sources: src}
}

// ParsePolicy parses the policy of in as the parent did, from its bytes
// only, and checks that it is the same policy.
func (in Init) ParsePolicy() (*policy.Policy, error) {
	read := func(path string, limit int64) ([]byte, error) {
		b, ok := in.Files[path]
		if !ok {
			return nil, fmt.Errorf("%s: not among the files the daemon sent", path)
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
		}
		return b, nil
	}
	p, err := policy.Parse(in.PolicyPath, in.Policy, policy.WithFileReader(read))
	if err != nil {
		return nil, err
	}
	if p.Digest != in.PolicyDigest {
		return nil, fmt.Errorf("policy digest %s, the daemon's is %s", p.Digest, in.PolicyDigest)
	}
	return p, nil
}

// Message types.
const (
	typeInit    = "init"
	typeReady   = "ready"
	typeCheck   = "check"
	typePick    = "pick"
	typeResult  = "result"
	typeObserve = "observe"
)

// Error kinds in a result, for what the engine branches on.
const (
	kindFailed      = "failed"
	kindUnreachable = "unreachable"
	kindTimeout     = "timeout"
)

type message struct {
	ID      uint64       `json:"id,omitempty"`
	Type    string       `json:"type"`
	Init    *Init        `json:"init,omitempty"`
	Check   *checkReq    `json:"check,omitempty"`
	Pick    *pickReq     `json:"pick,omitempty"`
	Result  *result      `json:"result,omitempty"`
	Observe *observation `json:"observe,omitempty"`
}

type checkReq struct {
	Image policy.Image `json:"image"`
	Tag   string       `json:"tag,omitempty"`
	Rule  string       `json:"rule"`
	// Within is how long the check may take (0: no limit).
	Within time.Duration `json:"within,omitempty"`
}

type pickReq struct {
	Tag        string        `json:"tag"`
	Candidates []string      `json:"candidates"`
	Within     time.Duration `json:"within,omitempty"`
}

type result struct {
	Verdict *cache.Verdict `json:"verdict,omitempty"`
	Digest  string         `json:"digest,omitempty"`
	ErrKind string         `json:"errKind,omitempty"`
	Err     string         `json:"err,omitempty"`
}

type observation struct {
	Host string        `json:"host"`
	Took time.Duration `json:"took"`
	Err  string        `json:"err,omitempty"`
}

// errFrameTooLarge is a frame past maxFrame: the stream is not ours.
var errFrameTooLarge = errors.New("frame larger than 16 MiB")

func writeFrame(w io.Writer, m *message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return errFrameTooLarge
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

func readFrame(r io.Reader) (*message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, errFrameTooLarge
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	var m message
	if err := strictjson.Unmarshal(b, &m, 16); err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	return &m, nil
}
