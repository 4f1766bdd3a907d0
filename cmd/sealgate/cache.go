package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/node"
)

const cacheLong = `The persisted verdicts, read with the key sealed in the TPM: a verdict whose
MAC fails is not shown.`

const cacheListLong = `Lists the persisted verdicts whose MAC verifies, with what was ignored on
load.`

const cachePurgeLong = `Removes every persisted verdict, and the clock mark they relied on.
sealgate run holds the cache: stop it first.`

// cacheCmd is `sealgate cache list|purge`: the persisted verdicts, read
// with the key sealed in the TPM (a verdict whose MAC fails is not shown).
func cacheCmd(sub string) func(*pflag.FlagSet, io.Writer) runFunc {
	return func(fs *pflag.FlagSet, _ io.Writer) runFunc {
		var nf nodeFlags
		nf.registerAnchor(fs, "where the daemon persists verdicts")
		output := fs.String("output", "text", "text or json (list)")
		return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
			if len(pos) > 0 {
				fmt.Fprintf(stderr, "sealgate cache %s: unexpected argument %q\n", sub, pos[0])
				return exitUsage
			}
			return cacheRun(sub, &nf, *output, stdout, stderr)
		}
	}
}

func cacheRun(sub string, nf *nodeFlags, output string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sealgate cache %s: %v\n", sub, err)
		return exitFailed
	}
	// The node as the daemon opens it, without measuring or keeping the
	// clock: list reads, purge writes only the verdict store.
	nf.cfg.Access = node.Inspect
	if sub == "purge" {
		nf.cfg.Access = node.Maintain
	}
	n, err := node.Open(nf.cfg)
	if errors.Is(err, cache.ErrLocked) {
		return fail(fmt.Errorf("%w: sealgate run holds the verdict cache; stop it first", err))
	}
	if err != nil {
		return fail(err)
	}
	defer n.Close()
	store, opened, stats := n.Verdicts(), n.Trust(), n.LoadStats()
	state := &nf.cfg.StateDir
	if sub == "purge" {
		count := store.Len()
		if err := store.Purge(); err != nil {
			return fail(err)
		}
		// With no verdict left, the clock mark has nothing to protect; a
		// damaged one would otherwise keep offline verdicts off.
		if err := os.Remove(filepath.Join(*state, cache.ClockMarkFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		fmt.Fprintf(stdout, "purged %d verdicts from %s\n", count, *state)
		return exitOK
	}
	entries := store.Entries()
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Generation uint64          `json:"generation"`
			Ignored    int             `json:"ignored"`
			Entries    []cache.Entry   `json:"entries"`
			Load       cache.LoadStats `json:"-"`
		}{opened.Generation, stats.Ignored(), entries, stats}); err != nil {
			return fail(err)
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "%d verdicts (generation %d; %d records ignored: bad MAC %d, older generation %d, malformed %d)\n",
		len(entries), opened.Generation, stats.Ignored(), stats.BadMAC, stats.OldGeneration, stats.Malformed)
	for _, e := range entries {
		verdict := "deny"
		if e.Verdict.Allowed {
			verdict = "allow"
		}
		fmt.Fprintf(stdout, "%s %s@%s rule=%s verified=%s %s\n", verdict, e.Key.Repository, e.Key.Digest, e.Key.Rule,
			e.Verdict.VerifiedAt.UTC().Format("2006-01-02T15:04:05Z"), strings.Join(e.Verdict.Reasons, "; "))
	}
	return exitOK
}
