package runtimegate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// Invocation is what the wrapper needs from runc's command line.
type Invocation struct {
	// Command is runc's subcommand ("create", "state", ...); empty when
	// there is none (runc --version).
	Command string
	// Bundle is the OCI bundle of create, run and restore ("." when the
	// command line names none, as runc defaults).
	Bundle string
	// ID is the container ID, runc's last argument.
	ID string
	// Log and LogFormat are runc's --log and --log-format: the shim reads
	// the last error from that file to explain a failed create.
	Log, LogFormat string
}

// ErrCommandLine is returned for a runc command line the wrapper cannot
// read; for a command that creates a container it is a refusal.
var ErrCommandLine = errors.New("runc command line")

// runcGlobalValue are runc's global flags that take a value (runc 1.1
// to 1.3); every other global flag is a boolean.
var runcGlobalValue = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// runcGlobalBool are runc's boolean global flags.
var runcGlobalBool = map[string]bool{"debug": true, "systemd-cgroup": true, "help": true, "h": true, "version": true, "v": true}

// Creates reports whether command makes a new container from a bundle.
func Creates(command string) bool {
	return command == "create" || command == "run" || command == "restore"
}

// ParseRuncArgs reads runc's command line (without the program name).
// Global flags are known; a command that creates a container must end with
// the container ID, as runc requires, and may name its bundle with -b or
// --bundle.
func ParseRuncArgs(args []string) (Invocation, error) {
	inv := Invocation{LogFormat: "text"}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case runcGlobalValue[name]:
			if !hasValue {
				if i+1 >= len(args) {
					return inv, fmt.Errorf("%w: %s needs a value", ErrCommandLine, a)
				}
				i++
				value = args[i]
			}
			switch name {
			case "log":
				inv.Log = value
			case "log-format":
				inv.LogFormat = value
			}
		case runcGlobalBool[name]:
		default:
			// The flag may take a value; what follows cannot be read.
			for _, rest := range args[i+1:] {
				if Creates(rest) {
					return inv, fmt.Errorf("%w: unknown global flag %s", ErrCommandLine, a)
				}
			}
			return inv, nil
		}
	}
	if i >= len(args) {
		return inv, nil
	}
	inv.Command = args[i]
	if !Creates(inv.Command) {
		return inv, nil
	}
	inv.Bundle = "."
	var positional []string
	sub := args[i+1:]
	for j := 0; j < len(sub); j++ {
		a := sub[j]
		if a == "--" {
			positional = append(positional, sub[j+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !runcCreateValue[name] || hasValue {
			if name == "b" || name == "bundle" {
				inv.Bundle = value
			}
			continue
		}
		if j+1 >= len(sub) {
			return inv, fmt.Errorf("%w: %s needs a value", ErrCommandLine, a)
		}
		j++
		if name == "b" || name == "bundle" {
			inv.Bundle = sub[j]
		}
	}
	// runc takes exactly one argument, the ID; more means a flag that takes
	// a value the wrapper does not know, and the ID cannot be told.
	if len(positional) != 1 || positional[0] == "" || strings.HasPrefix(positional[0], "-") {
		return inv, fmt.Errorf("%w: runc %s wants one container ID, got %q", ErrCommandLine, inv.Command, positional)
	}
	inv.ID = positional[0]
	return inv, nil
}

// runcCreateValue are the flags of runc create, run and restore that take a
// value (runc 1.1 to 1.3); the others are booleans.
var runcCreateValue = map[string]bool{
	"b": true, "bundle": true, "console-socket": true, "pidfd-socket": true, "pid-file": true, "preserve-fds": true,
	"image-path": true, "work-path": true, "manage-cgroups-mode": true, "empty-ns": true, "lsm-profile": true,
	"lsm-mount-context": true, "parent-path": true, "page-server": true, "status-fd": true,
}

// maxSpec bounds the spec the wrapper reads (containerd's are a few KiB;
// seccomp profiles make them tens).
const maxSpec = 16 << 20

// SpecAnnotations reads the annotations of the bundle's config.json.
func SpecAnnotations(bundle string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpec+1))
	if err != nil {
		return nil, fmt.Errorf("read the container's spec: %w", err)
	}
	if len(b) > maxSpec {
		return nil, fmt.Errorf("read the container's spec: longer than %d bytes", maxSpec)
	}
	ann, err := parseSpecAnnotations(b)
	if err != nil {
		return nil, fmt.Errorf("read the container's spec %s: %w", f.Name(), err)
	}
	return ann, nil
}

// parseSpecAnnotations reads the annotations of an OCI runtime spec.
func parseSpecAnnotations(b []byte) (map[string]string, error) {
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	// Keys the runtime and sealgate could read differently (a duplicate
	// annotation) refuse the container; runc matches field names as
	// encoding/json does, so the struct below reads what runc reads.
	if err := strictjson.Check(b, 64); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	return spec.Annotations, nil
}

// Gate is the wrapper's side: it asks the daemon about one invocation.
type Gate struct {
	Socket  string
	Timeout time.Duration
	Now     func() time.Time
}

// Verdict is the wrapper's answer for one invocation.
type Verdict struct {
	Allowed bool
	// Message explains a refusal (for the runtime's error) or an escape
	// (for the log); empty for a plain pass.
	Message string
}

// Decide says whether inv may go on to the real runtime. Commands that do
// not create a container pass; for the others, no answer, no record or a
// record for another image is a refusal, except for a pod carrying the
// escape annotation while sealgate does not answer.
func (g Gate) Decide(inv Invocation) Verdict {
	if !Creates(inv.Command) {
		return Verdict{Allowed: true}
	}
	ann, err := SpecAnnotations(inv.Bundle)
	if err != nil {
		return refuse(inv.ID, "", err.Error())
	}
	req := CheckRequest(inv.ID, ann)
	a, err := Ask(g.Socket, req, g.Timeout)
	if err == nil {
		if !a.Allowed {
			return refuse(inv.ID, req.Image, a.Reason)
		}
		return Verdict{Allowed: true}
	}
	if Escaped(ann) {
		now := time.Now
		if g.Now != nil {
			now = g.Now
		}
		e := Escape{Time: now().UTC(), ID: inv.ID, Kind: req.Kind, Namespace: req.Namespace, Pod: req.Pod,
			Container: req.Container, Image: req.Image, Why: err.Error()}
		msg := fmt.Sprintf("sealgate runtime gate: %s did not answer; container %s (pod %s/%s, image %s) started on the %s annotation",
			g.Socket, inv.ID, req.Namespace, req.Pod, req.Image, EscapeAnnotation)
		if werr := WriteEscape(g.Socket, e); werr != nil {
			// An escape nobody can audit is not an escape.
			return refuse(inv.ID, req.Image, fmt.Sprintf("%v; the escape annotation is set but the escape could not be recorded: %v", err, werr))
		}
		return Verdict{Allowed: true, Message: msg}
	}
	return refuse(inv.ID, req.Image, fmt.Sprintf("%v; no container is created while sealgate is not running (check: systemctl status sealgate; sealgate doctor)", err))
}

func refuse(id, image, reason string) Verdict {
	what := "container " + id
	if image != "" {
		what += " (image " + image + ")"
	}
	return Verdict{Message: "sealgate runtime gate: refused " + what + ": " + reason}
}

// RuncLogLine formats msg as a runc log line in format ("json" or "text"),
// so that the shim's "OCI runtime create failed" error carries it.
func RuncLogLine(format, msg string, now time.Time) []byte {
	if format == "json" {
		b, _ := json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{"error", msg, now.UTC().Format(time.RFC3339Nano)})
		return append(b, '\n')
	}
	return []byte(fmt.Sprintf("time=%q level=error msg=%q\n", now.UTC().Format(time.RFC3339Nano), msg))
}

// HookStateLimit bounds the OCI state a hook reads on its standard input.
const HookStateLimit = 1 << 20

// DecideHook is Decide for the gate run as an OCI createRuntime hook
// (CRI-O's hooks.d, for any OCI runtime): the runtime gives the container's
// state on standard input (its ID and bundle, and the spec's annotations),
// and a non-zero exit makes the runtime abandon the creation.
func (g Gate) DecideHook(state []byte) Verdict {
	if len(state) > HookStateLimit {
		return refuse("", "", fmt.Sprintf("the runtime's state for the hook is longer than %d bytes", HookStateLimit))
	}
	if err := strictjson.Check(state, 64); err != nil {
		return refuse("", "", fmt.Sprintf("the runtime's state for the hook: %v", err))
	}
	var st struct {
		ID     string `json:"id"`
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal(state, &st); err != nil || st.ID == "" || st.Bundle == "" {
		return refuse(st.ID, "", fmt.Sprintf("the runtime's state for the hook names no container and bundle (%v)", err))
	}
	// The annotations are read from the bundle's spec, as the wrapper
	// reads them, not from the state's copy.
	return g.Decide(Invocation{Command: "create", ID: st.ID, Bundle: st.Bundle})
}
