package daemon

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/node"
)

// TestTake: the configuration sealgate run leaves in the environment comes
// back whole, is removed from the environment, and anything else is
// refused with what to do.
func TestTake(t *testing.T) {
	want := Config{Node: node.Config{TrustDir: "/etc/sealgate", CacheSize: 7, Deadline: 1500 * time.Millisecond, Verifier: "/usr/local/bin/sealgate",
		GateSocket: "/run/sealgate/gate.sock", LaunchedByRuntime: true}, LogLevel: "warn", LogFormat: "json"}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(Env, string(b))
	got, err := Take()
	if err != nil {
		t.Fatal(err)
	}
	if g, w := mustJSON(t, got), string(b); g != w {
		t.Errorf("took %s, want %s", g, w)
	}
	if _, ok := os.LookupEnv(Env); ok {
		t.Errorf("$%s is still set: the verifier and credential helpers would inherit it", Env)
	}
	for _, c := range []struct{ name, env, want string }{
		{"unknown field", `{"node":{},"logLevel":"info","logFormat":"text","extra":1}`, "same release"},
		{"duplicate key", `{"logLevel":"info","logLevel":"debug"}`, "duplicate"},
		{"too large", `{"logLevel":"` + strings.Repeat("a", maxConfig) + `"}`, "more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(Env, c.env)
			if _, err := Take(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Take() = %v, want an error saying %q", err, c.want)
			}
		})
	}
	os.Unsetenv(Env)
	if _, err := Take(); err == nil || !strings.Contains(err.Error(), "sealgate run") {
		t.Errorf("Take() without the variable = %v, want an error naming sealgate run", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
