// Command runcclamp stands between a test node's runtime and runc on
// machines without CAP_SYS_RESOURCE (CI's sandboxes), where runc cannot give
// a process a negative OOM score and CRI-O asks for one for its infra and
// conmon-managed containers. For create and run it raises a negative
// process.oomScoreAdj in the bundle's config.json to 0, then execs runc;
// every other command is exec'd unchanged. It changes nothing sealgate
// reads (image, annotations, the container's identity). Tests only: the
// real runc is baked in at build time (-ldflags -X main.runc=PATH).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

var runc = "/usr/sbin/runc"

func main() {
	args := os.Args[1:]
	if bundle, ok := bundleOf(args); ok {
		if err := clamp(filepath.Join(bundle, "config.json")); err != nil {
			fmt.Fprintf(os.Stderr, "runcclamp: %v\n", err)
			os.Exit(1)
		}
	}
	err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runcclamp: exec %s: %v\n", runc, err)
	os.Exit(1)
}

// bundleOf finds the bundle of a create or run command.
func bundleOf(args []string) (string, bool) {
	cmd := -1
	for i, a := range args {
		if a == "create" || a == "run" {
			cmd = i
			break
		}
	}
	if cmd < 0 {
		return "", false
	}
	for i := cmd + 1; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			return args[i+1], true
		case len(a) > 9 && a[:9] == "--bundle=":
			return a[9:], true
		}
	}
	wd, err := os.Getwd()
	return wd, err == nil
}

func clamp(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	proc, _ := spec["process"].(map[string]any)
	if v, ok := proc["oomScoreAdj"].(float64); !ok || v >= 0 {
		return nil
	}
	proc["oomScoreAdj"] = 0
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
