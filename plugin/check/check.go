// Package check is the slow path of a decision: it fetches the signatures,
// attestations and bundles a rule needs from the signature sources and has
// them verified, for decision.Engine, which holds the verdicts. It is the
// part of sealgate that reads what registries send.
package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/platforms"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verify"
)

// Checker fetches from one source and verifies with one verifier, for one
// policy. It is safe for concurrent use.
type Checker struct {
	source   source.Source
	verifier *verify.Verifier
	platform platforms.MatchComparer
	// platformName names the platform in messages.
	platformName string
	prefer       preference
}

var _ decision.Checker = (*Checker)(nil)

// Option configures a Checker.
type Option func(*Checker) error

// WithVerifier sets the signature verifier (default: one built with the
// policy's trusted roots).
func WithVerifier(v *verify.Verifier) Option {
	return func(c *Checker) error {
		if v == nil {
			return errors.New("nil verifier")
		}
		c.verifier = v
		return nil
	}
}

// WithPlatform sets the node's platform ("os/arch[/variant]"), whose
// matcher picks the platform manifest of an index as the runtime does
// (default: containerd's platforms.Default(), the node's own platform with
// its CPU variant).
func WithPlatform(p string) Option {
	return func(c *Checker) error {
		if strings.Count(p, "/") < 1 {
			return fmt.Errorf("platform %q: want os/arch[/variant]", p)
		}
		spec, err := platforms.Parse(p)
		if err != nil {
			return fmt.Errorf("platform %q: %w", p, err)
		}
		c.platform, c.platformName = platforms.Only(spec), platforms.Format(spec)
		return nil
	}
}

// New builds a checker for p that fetches from src.
func New(p *policy.Policy, src source.Source, opts ...Option) (*Checker, error) {
	if p == nil {
		return nil, errors.New("new checker: nil policy")
	}
	if src == nil {
		return nil, errors.New("new checker: nil source")
	}
	c := &Checker{source: src, platform: platforms.Default(), platformName: platforms.Format(platforms.DefaultSpec())}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("new checker: %w", err)
		}
	}
	if c.verifier == nil {
		// The roots as the policy read and digested them, never read
		// again: on a sealed node, the bytes checked against the TPM.
		var vopts []verify.Option
		for _, r := range p.TrustedRoots {
			if data, ok := p.FileData(r); ok {
				vopts = append(vopts, verify.WithTrustedRootJSON(r, data))
			} else {
				vopts = append(vopts, verify.WithTrustedRootFiles(r))
			}
		}
		if p.PEMRoots != nil {
			vopts = append(vopts, verify.WithPEMRoots(*p.PEMRoots))
		}
		v, err := verify.New(vopts...)
		if err != nil {
			return nil, fmt.Errorf("new checker: %w", err)
		}
		c.verifier = v
	}
	return c, nil
}

// Check fetches and verifies the material of one image (decision.Checker).
// A failure because no source answered wraps decision.ErrUnreachable, with
// the source's own message.
func (c *Checker) Check(ctx context.Context, chk decision.Check) decision.Outcome {
	var out decision.Outcome
	if chk.Tag != "" {
		out = c.verifyPulledThrough(ctx, chk.Image, chk.Tag, chk.Rule)
	} else {
		out = c.verify(ctx, chk.Image, chk.Rule)
	}
	if errors.Is(out.Err, source.ErrUnreachable) {
		out.Err = unreachable{out.Err}
	}
	return out
}

// unreachable marks an error as decision.ErrUnreachable, keeping its text.
type unreachable struct{ error }

func (u unreachable) Is(target error) bool { return target == decision.ErrUnreachable }
func (u unreachable) Unwrap() error        { return u.error }

// maxPreferences bounds the repositories whose scheme is remembered.
const maxPreferences = 4096

// preference remembers, per repository, whether cosign's classic tags
// rather than the referrers satisfied its last verified image, so that the
// next digest of that repository is asked the same way first.
type preference struct {
	mu      sync.Mutex
	classic map[string]bool
}

func (p *preference) classicFirst(repository string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.classic[repository]
}

func (p *preference) satisfied(repository string, classic bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.classic[repository] == classic {
		return
	}
	if p.classic == nil || len(p.classic) >= maxPreferences {
		p.classic = make(map[string]bool, 64)
	}
	p.classic[repository] = classic
}
