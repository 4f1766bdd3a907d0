// Package verifier is where a node's slow path runs: the sources its
// configuration names (the bundle store, the registries, their
// credentials) and the Checker over them that fetches and verifies what no
// verdict decides. The daemon binary (sealgate-daemon) does not link it:
// it runs in `sealgate verifier`, the process the daemon starts when it
// needs it (Serve), or in the process of a command that decides alone
// (sealgate verify, and sealgate run without the daemon binary: Local).
package verifier

import (
	"context"
	"fmt"
	"io"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/checkproc"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// Local checks in this process: the node.LocalChecker of every command
// that links the verifier.
func Local(cfg node.Config, p *policy.Policy, observe node.RequestObserver) (decision.Checker, error) {
	var opts []source.Option
	if observe != nil {
		opts = append(opts, source.WithRequestObserver(source.RequestObserver(observe)))
	}
	src, err := NewSource(cfg, opts...)
	if err != nil {
		return nil, err
	}
	return check.New(p, src)
}

var _ node.LocalChecker = Local

// Serve is the verifier process (`sealgate verifier`): it builds the
// sources and the checker from the node configuration the daemon sends on
// r (node.Config as JSON, the same flags the daemon was given) and answers
// its checks on w until r ends.
func Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	return checkproc.Serve(ctx, r, w, func(in checkproc.Init, p *policy.Policy, observe checkproc.Observer) (decision.Checker, error) {
		var cfg node.Config
		if len(in.Sources) > 0 {
			if err := strictjson.Unmarshal(in.Sources, &cfg, 0); err != nil {
				return nil, fmt.Errorf("node configuration: %w", err)
			}
		}
		return Local(cfg, p, node.RequestObserver(observe))
	})
}
