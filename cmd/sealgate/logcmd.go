package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/decisionlog"
	"github.com/sealgate/sealgate/plugin/node"
)

const logLong = `sealgate run writes every decision as one JSON line to the decision log
(--decision-log, default <state-dir>/decisions.log), each line carrying the
SHA-256 of the one before it, across rotated files, and the end of the chain
in a head file beside the log.`

const logVerifyLong = `Checks that no line of the decision log was removed, edited, reordered or
cut off the end, naming the first line where the chain breaks. Without FILE,
the log of --state-dir with its rotated files (decisions.log.N, oldest first);
with FILE..., those files, oldest first, and the head file beside the last.

Exit status: 0 the chain is whole, 1 it is broken, 2 usage or unreadable files.`

// rotated is the suffix of a rotated log file.
var rotated = regexp.MustCompile(`\.[0-9]+$`)

func logVerifyCmd(fs *pflag.FlagSet, _ io.Writer) runFunc {
	state := fs.String("state-dir", node.DefaultStateDir, "the daemon's state folder, where the decision log is by default")
	headFile := fs.String("head", "", "the head file (default: the last file's, FILE.head); none: do not check where the chain ends")
	return func(_ context.Context, files []string, stdout, stderr io.Writer) int {
		if len(files) == 0 {
			files = decisionlog.Files(filepath.Join(*state, "decisions.log"))
			if len(files) == 0 {
				fmt.Fprintf(stderr, "sealgate log verify: no decision log in %s\n", *state)
				return exitUsage
			}
		}
		var head *decisionlog.Head
		switch hp := *headFile; {
		case hp == "none":
		default:
			if hp == "" {
				hp = rotated.ReplaceAllString(files[len(files)-1], "") + ".head"
			}
			h, err := decisionlog.ReadHead(hp)
			if err != nil {
				fmt.Fprintf(stderr, "sealgate log verify: %v (give --head none to check the lines only)\n", err)
				return exitUsage
			}
			head = h
		}
		n, err := decisionlog.Verify(files, head)
		switch {
		case errors.Is(err, decisionlog.ErrBroken):
			fmt.Fprintln(stdout, err)
			return exitFailed
		case err != nil:
			fmt.Fprintf(stderr, "sealgate log verify: %v\n", err)
			return exitUsage
		}
		end := ""
		if head != nil {
			end = fmt.Sprintf(", ending at line %d as the head file says", head.Seq)
		}
		fmt.Fprintf(stdout, "%d lines in %d files: the chain is whole%s\n", n, len(files), end)
		return exitOK
	}
}
