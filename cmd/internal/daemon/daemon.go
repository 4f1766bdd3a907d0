// Package daemon runs the node (sealgate run) and carries its
// configuration from the sealgate binary, which turns flags into it, to the
// daemon binary (sealgate-daemon) that sealgate run executes in its place:
// same process, same PID, a binary that links the gate without the
// verifier, so that the process that stays up is small. What no verdict
// decides is checked in the verifier process, `sealgate verifier`, started
// when needed.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/plugin/node"
)

const (
	// Binary is the daemon binary's name; sealgate run looks for it
	// beside its own executable.
	Binary = "sealgate-daemon"
	// Env carries the configuration to the daemon binary; the daemon
	// removes it from its environment as it reads it.
	Env = "SEALGATE_DAEMON_CONFIG"
	// maxConfig bounds what the daemon reads from Env.
	maxConfig = 1 << 20
)

// Exit statuses, as cmd/sealgate's.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// releaseAfter is when the daemon releases the pages only start-up used
// (releaseStartupPages).
const releaseAfter = 5 * time.Second

// Config is what the daemon runs with.
type Config struct {
	Node      node.Config `json:"node"`
	LogLevel  string      `json:"logLevel"`
	LogFormat string      `json:"logFormat"`
}

// Find returns the daemon binary beside the executable that runs, or ""
// when there is none (a copy of sealgate alone: it then runs the daemon in
// its own process).
func Find() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		return "", err
	}
	path := filepath.Join(filepath.Dir(exe), Binary)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil
	case err != nil:
		return "", err
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

// Exec replaces this process with the daemon binary at path, running c.
// It returns only on failure.
func Exec(path string, c Config) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	env := append(os.Environ(), Env+"="+string(b))
	return fmt.Errorf("execute %s: %w", path, syscall.Exec(path, []string{path}, env))
}

// Take reads the configuration sealgate run left in the environment and
// removes it, so that no child process inherits it.
func Take() (Config, error) {
	raw, ok := os.LookupEnv(Env)
	if !ok {
		return Config{}, fmt.Errorf("no configuration in $%s: the daemon is started by `sealgate run`", Env)
	}
	_ = os.Unsetenv(Env)
	if len(raw) > maxConfig {
		return Config{}, fmt.Errorf("$%s holds %d bytes, more than %d", Env, len(raw), maxConfig)
	}
	var c Config
	if err := strictjson.Unmarshal([]byte(raw), &c, 0); err != nil {
		return Config{}, fmt.Errorf("$%s: %w (sealgate and %s must come from the same release)", Env, err, Binary)
	}
	return c, nil
}

// NewLogger is the daemon's logger: level debug, info, warn or error;
// format text or json.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// Run opens the node of c and serves until ctx is done, reloading on
// SIGHUP; it returns the exit status.
func Run(ctx context.Context, c Config, stderr io.Writer) int {
	log, err := NewLogger(stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate run: %v\n", err)
		return exitUsage
	}
	cfg := c.Node
	cfg.Logger = log
	cfg.Access = node.Daemon
	if os.Getenv("GOGC") == "" {
		// The GC target follows the live heap (tuneGC); GOGC in the
		// unit's environment overrides.
		gcCtx, stopGC := context.WithCancel(ctx)
		defer stopGC()
		go tuneGC(gcCtx)
	}
	// SIGHUP reloads the trust store (as a change of the sealed files
	// does), without dropping the runtime connection.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	cfg.ReloadRequests = reload
	n, err := node.Open(cfg)
	if err != nil {
		log.Error("cannot start: " + err.Error())
		return exitFor(err)
	}
	defer n.Close()
	if cfg.Verifier != "" {
		// Without the verifier in this process, what stays in use of the
		// binary after start-up is small.
		release := time.AfterFunc(releaseAfter, func() {
			if n, err := releaseStartupPages(); err != nil {
				log.Debug("releasing the start-up pages", "error", err.Error())
			} else {
				log.Debug("released the start-up pages of the binary", "mappedBytes", n)
			}
		})
		defer release.Stop()
	}
	err = n.Run(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, node.ErrHandedOverConnectionClosed):
		log.Error(err.Error() + "; exiting")
		return exitFailed
	}
	log.Error("cannot start: " + err.Error())
	return exitFor(err)
}

// exitFor maps a node error to an exit status: 2 for what configuration
// fixes, 1 for a failure of the node.
func exitFor(err error) int {
	if errors.Is(err, node.ErrConfig) {
		return exitUsage
	}
	return exitFailed
}
