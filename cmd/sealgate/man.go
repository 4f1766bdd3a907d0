package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

const manLong = `Writes one man page (section 1) per command, generated from the command
definitions that also give the help and the shell completion, into DIR:
sealgate.1, sealgate-verify.1, sealgate-trust-seal.1, ... Install them under
/usr/share/man/man1 (install.sh does).`

func manCmd(fs *pflag.FlagSet, _ io.Writer) runFunc {
	dir := fs.String("dir", "", "folder to write the man pages into (made when missing)")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 || *dir == "" {
			fmt.Fprintln(stderr, "sealgate man: give the folder to write into with --dir DIR")
			return exitUsage
		}
		if err := writeManPages(*dir); err != nil {
			fmt.Fprintf(stderr, "sealgate man: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "wrote the man pages to %s\n", *dir)
		return exitOK
	}
}

// writeManPages writes the pages of a fresh command tree: the tree that
// runs is never altered.
func writeManPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	code := 0
	root := newRoot(io.Discard, io.Discard, &code)
	root.DisableAutoGenTag = true
	hideHelp(root)
	return doc.GenManTree(root, &doc.GenManHeader{Title: "SEALGATE", Section: "1", Source: "sealgate " + version, Manual: "sealgate manual"}, dir)
}

// hideHelp leaves cobra's help command out of the pages.
func hideHelp(c *cobra.Command) {
	c.InitDefaultHelpCmd()
	for _, s := range c.Commands() {
		if s.Name() == "help" {
			s.Hidden = true
		}
	}
}
