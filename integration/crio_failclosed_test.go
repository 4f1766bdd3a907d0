//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/runtimegate"
)

// crioGated is a CRI-O node whose runc runtime is sealgate's runtime gate
// (sealgate-runc as runtime_path): CRI-O has no required plugins and
// creates containers unchecked when its NRI plugin is gone, so the gate is
// what fails closed there.
type crioGated struct {
	f      *fixture
	c      *testenv.CRIO
	socket string // the runtime gate's (the daemon's) socket
}

// newCRIOGated starts the node with the gate as the runtime wrapper
// (runtime_path) or, with hook, as an OCI createRuntime hook in hooks.d.
func newCRIOGated(t *testing.T, hook bool) *crioGated {
	t.Helper()
	f := newFixture(t)
	socket := gateSocketDir(t)
	opts := testenv.CRIOOptions{RuntimeGate: testenv.BuildRuntimeGate(t), GateSocket: socket}
	if hook {
		opts = testenv.CRIOOptions{HooksDir: installedHook(t, socket)}
	}
	c := f.crioNode(t, opts)
	return &crioGated{f: f, c: c, socket: socket}
}

// installedHook writes install/crio/sealgate.json into a hooks folder as
// install.sh installs it (the gate's path rewritten), with the test's gate
// socket in the hook's environment, and returns the folder.
func installedHook(t *testing.T, socket string) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var hook map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(root, "install", "crio", "sealgate.json"))), &hook); err != nil {
		t.Fatal(err)
	}
	h := hook["hook"].(map[string]any)
	if h["path"] != "/usr/local/bin/sealgate-runc" {
		t.Fatalf("the hook does not name /usr/local/bin/sealgate-runc, which install.sh rewrites: %v", h["path"])
	}
	h["path"] = testenv.BuildRuntimeGate(t)
	h["env"] = []string{runtimegate.SocketEnv + "=" + socket}
	b, err := json.Marshal(hook)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "sealgate.json"), string(b))
	return dir
}

func (n *crioGated) start(t *testing.T) *sealgate {
	t.Helper()
	return startSealgateCRIOAt(t, n.f, n.c, n.socket)
}

// ran lists the containers of images under repo (e.g. "apps/unsigned")
// whose process started, by ID.
func (n *crioGated) ran(t *testing.T, repo string) []string {
	t.Helper()
	out, err := n.c.Crictl("ps", "-a", "-q")
	if err != nil {
		t.Fatalf("crictl ps: %v: %s", err, out)
	}
	var ran []string
	for _, id := range strings.Fields(out) {
		o, err := n.c.Crictl("inspect", "-o", "go-template", "--template", "{{.status.image.image}} {{.status.startedAt}} {{.status.state}}", id)
		if err != nil {
			t.Fatalf("crictl inspect %s: %v: %s", id, err, o)
		}
		f := strings.Fields(o)
		if len(f) < 3 || !strings.Contains(f[0], repo) {
			continue
		}
		if !strings.HasPrefix(f[1], "1970-01-01T00:00:00") || f[2] == "CONTAINER_RUNNING" {
			ran = append(ran, id+" ("+strings.TrimSpace(o)+")")
		}
	}
	return ran
}

// TestCRIOFailClosed: on CRI-O with the runtime gate, as the runtime
// wrapper and as an OCI hook, sealgate SIGKILLed three times in a burst of
// 50 creations (restarted a second later, as systemd would), SIGTERMed,
// SIGSTOPped past the NRI request timeout, and absent at boot: zero
// unsigned containers are created; signed ones run whenever sealgate is up.
func TestCRIOFailClosed(t *testing.T) {
	for _, mode := range []string{"wrapper", "hook"} {
		t.Run(mode, func(t *testing.T) { crioFailClosed(t, newCRIOGated(t, mode == "hook")) })
	}
}

func crioFailClosed(t *testing.T, n *crioGated) {
	for _, img := range []string{n.f.signedTag, n.f.unsignedTag} {
		if err := n.c.Pull(img); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("absent at boot", func(t *testing.T) {
		for _, img := range []string{n.f.signedTag, n.f.unsignedTag} {
			_, out, err := n.c.Run(img, "no-sealgate", "default")
			if err == nil {
				t.Fatalf("%s ran on CRI-O with sealgate absent:\n%s", img, out)
			}
			if !strings.Contains(out, "sealgate") {
				t.Errorf("refusal of %s does not name sealgate:\n%s", img, out)
			}
		}
	})

	// Started for the whole test, not a subtest: a subtest's clean-up
	// would stop it.
	parent := t
	s := n.start(parent)
	if _, out, err := n.c.Run(n.f.signedTag, "gated-signed", "default"); err != nil {
		t.Fatalf("signed image refused through the runtime gate: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}

	t.Run("SIGKILL in a burst of 50", func(t *testing.T) {
		const total, workers = 50, 2
		killAt := map[int]bool{6: true, 20: true, 34: true}
		type result struct {
			i      int
			signed bool
			out    string
			err    error
		}
		jobs, results := make(chan int), make(chan result)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					img := n.f.unsignedTag
					if i%2 == 0 {
						img = n.f.signedTag
					}
					_, out, err := n.c.Run(img, fmt.Sprintf("burst-%d", i), "default")
					results <- result{i, i%2 == 0, out, err}
				}
			}()
		}
		go func() {
			for i := range total {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			close(results)
		}()
		done := 0
		refusedBy := map[string]int{}
		for r := range results {
			done++
			if !r.signed && r.err == nil {
				t.Errorf("creation %d: unsigned image ran:\n%s", r.i, r.out)
			}
			if !r.signed && r.err != nil {
				switch {
				case strings.Contains(r.out, "sealgate runtime gate: refused"):
					refusedBy["runtime gate"]++
				case strings.Contains(r.out, "sealgate: denied"):
					refusedBy["NRI, sealgate's decision"]++
				default:
					t.Errorf("creation %d: unsigned refused without naming sealgate:\n%s", r.i, r.out)
				}
			}
			if killAt[done] {
				s.signal(t, syscall.SIGKILL)
				<-s.exited
				time.Sleep(time.Second)
				s = n.start(parent)
			}
		}
		t.Logf("unsigned creations refused by: %v", refusedBy)
		if refusedBy["runtime gate"] == 0 {
			t.Logf("no creation fell in a window where only the runtime gate stood (timing)")
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		s.signal(t, syscall.SIGTERM)
		<-s.exited
		_, out, err := n.c.Run(n.f.unsignedTag, "after-term", "default")
		if err == nil || !strings.Contains(out, "sealgate") {
			t.Fatalf("unsigned image with sealgate stopped: %v\n%s", err, out)
		}
		s = n.start(parent)
	})

	t.Run("SIGSTOP past the request timeout", func(t *testing.T) {
		var cont sync.WaitGroup
		_, out, err := n.c.RunPod(testenv.PodSpec{Image: n.f.unsignedTag, Name: "stopped", Namespace: "default", BeforeCreate: func() {
			s.signal(t, syscall.SIGSTOP)
			cont.Add(1)
			time.AfterFunc(3*time.Second, func() {
				defer cont.Done()
				_ = s.cmd.Process.Signal(syscall.SIGCONT)
			})
		}})
		cont.Wait()
		if err == nil {
			t.Fatalf("unsigned image ran while sealgate was stopped:\n%s", out)
		}
		t.Logf("refused while stopped:\n%s", out)
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, out, err := n.c.Run(n.f.signedTag, fmt.Sprintf("after-cont-%d", time.Now().UnixNano()%1000), "default")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("signed image refused 15 s after SIGCONT: %v\n%s\nsealgate log:\n%s", err, out, s.log())
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	if ran := n.ran(t, "apps/unsigned"); len(ran) > 0 {
		t.Errorf("unsigned containers ran on CRI-O: %v", ran)
	}
	// The same query finds the signed ones that ran: it can find a
	// container that ran.
	if ran := n.ran(t, "apps/signed"); len(ran) == 0 {
		t.Error("no signed container found running: the check for unsigned ones finds nothing either")
	}
}

// TestCRIODoctor: on a CRI-O node with the runtime gate installed as the
// OCI hook install.sh installs, doctor (told nothing about the runtime:
// sealgate says it is connected to CRI-O) passes its CRI-O checks; on a
// CRI-O node without the gate it fails and names the fix.
func TestCRIODoctor(t *testing.T) {
	n := newCRIOGated(t, true)
	s := n.start(t)
	doctor := func(c *testenv.CRIO, socket string) (string, int) {
		return sealgateCmd(t, "doctor", "--gate-socket", socket, "--crio-bin", crioBin(t), "--crio-config", c.ConfigPath,
			"--crio-config-dir", "", "--tpm", "none", "--wait", "10s")
	}
	out, code := doctor(n.c, s.gateSocket)
	t.Logf("doctor on the gated CRI-O node:\n%s", out)
	for _, want := range []string{"ok   runtime gate as an OCI hook", "ok   NRI enabled", "ok   sealgate connected", "registered with cri-o 1.34.0", "ok   request timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q (exit %d):\n%s", want, code, out)
		}
	}

	f := newFixture(t)
	bare := f.crioNode(t, testenv.CRIOOptions{})
	s2 := startSealgateCRIO(t, f, bare)
	out, code = doctor(bare, s2.gateSocket)
	if code != 1 || !strings.Contains(out, "FAIL runtime gate installed") || !strings.Contains(out, "install.sh --runtime crio") {
		t.Errorf("doctor on CRI-O without the gate: exit %d, want 1 naming the fix:\n%s", code, out)
	}
}

func crioBin(t testing.TB) string {
	t.Helper()
	p, err := testenv.Tool("crio")
	if err != nil {
		t.Fatal(err)
	}
	return p
}
