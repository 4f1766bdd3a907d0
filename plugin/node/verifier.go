package node

import (
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/sealgate/sealgate/plugin/checkproc"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
)

// RequestObserver is told about every registry request made for the node,
// in its process or in the verifier's (for the metrics).
type RequestObserver func(host string, took time.Duration, err error)

// LocalChecker builds the Checker that fetches and verifies in this
// process under p, with the sources cfg names. It is a field of Config,
// not an import, so that the daemon binary links none of the verifier
// (plugin/node/verifier.Local is the one there is).
type LocalChecker func(cfg Config, p *policy.Policy, observe RequestObserver) (decision.Checker, error)

// errNoChecker: a binary without the verifier configured without a
// verifier process.
var errNoChecker = errors.New("this binary verifies only in a verifier process, and none is configured")

// checker is what checks what no verdict decides under p: the verifier
// process when the configuration names one, else this process.
func (n *Node) checker(p *policy.Policy) (decision.Checker, error) {
	if n.cfg.Verifier == "" {
		if n.cfg.Local == nil {
			return nil, errNoChecker
		}
		return n.cfg.Local(n.cfg, p, n.observeRequest)
	}
	// The verifier builds its sources from the same configuration; the
	// policy goes in the Init, as parsed here.
	sent := n.cfg
	sent.PolicyBytes = nil
	src, err := json.Marshal(sent)
	if err != nil {
		return nil, err
	}
	opts := []checkproc.ClientOption{checkproc.WithObserver(n.observeRequest), checkproc.WithStderr(os.Stderr), checkproc.WithExecutable(n.verifier)}
	if n.cfg.VerifierIdle > 0 {
		opts = append(opts, checkproc.WithIdle(n.cfg.VerifierIdle))
	}
	return checkproc.NewClient([]string{n.cfg.Verifier, "verifier"}, checkproc.InitFor(p, src), opts...)
}
