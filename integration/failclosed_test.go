//go:build integration

package integration

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/runtimegate"
)

// TestGatedNodeBasics: on a node set up with both gates, a signed image
// runs (its sandbox and container pass the runtime gate), an unsigned one
// is refused at create with sealgate's reason.
func TestGatedNodeBasics(t *testing.T) {
	n := newGatedNode(t, nil)
	n.start(t)
	id, out, err := n.run(n.f.signedTag, "signed", nil)
	if err != nil {
		t.Fatalf("signed image on a gated node: %v\n%s", err, out)
	}
	if st, _ := n.c.ContainerState(id); st != "CONTAINER_RUNNING" {
		t.Errorf("signed container state %s, want CONTAINER_RUNNING", st)
	}
	_, out, err = n.run(n.f.unsignedTag, "unsigned", nil)
	if err == nil {
		t.Fatalf("unsigned image ran on a gated node:\n%s", out)
	}
	if miss := missing(out, "sealgate: denied", n.f.unsigned.DigestStr()); len(miss) > 0 {
		t.Errorf("refusal lacks %q:\n%s", miss, out)
	}
	if ran := n.ranUnsigned(t); len(ran) > 0 {
		t.Errorf("unsigned containers ran: %v", ran)
	}
}

// TestKillDuringBurst: sealgate is SIGKILLed at several points of a burst
// of 50 creations (25 signed, 25 unsigned, interleaved, two at a time, as a
// kubelet does) and restarted about a second later, as systemd would. No
// unsigned container runs, before, during or after; signed ones run again
// once sealgate is back.
func TestKillDuringBurst(t *testing.T) {
	n := newGatedNode(t, nil)
	for _, img := range []string{n.f.signedTag, n.f.unsignedTag} {
		if err := n.c.Pull(img); err != nil {
			t.Fatal(err)
		}
	}
	s := n.start(t)

	const total, workers = 50, 2
	killAt := map[int]bool{6: true, 20: true, 34: true}
	type result struct {
		i      int
		signed bool
		id     string
		out    string
		err    error
	}
	jobs := make(chan int)
	results := make(chan result)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				signed := i%2 == 0
				img := n.f.unsignedTag
				if signed {
					img = n.f.signedTag
				}
				id, out, err := n.run(img, fmt.Sprintf("burst-%d", i), nil)
				results <- result{i, signed, id, out, err}
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

	done, kills := 0, 0
	var signedAfter []bool
	// Which layer refused each unsigned creation, for the log.
	refusedBy := map[string]int{}
	restarted := false
	for r := range results {
		done++
		if !r.signed && r.err == nil {
			t.Errorf("creation %d: unsigned image ran (container %s):\n%s", r.i, r.id, r.out)
		}
		if !r.signed && r.err != nil {
			switch {
			case strings.Contains(r.out, "sealgate runtime gate: refused"):
				refusedBy["runtime gate"]++
			case strings.Contains(r.out, "sealgate: denied"):
				refusedBy["NRI, sealgate's decision"]++
			case strings.Contains(r.out, "sealgate"):
				refusedBy["NRI validator (sealgate not connected)"]++
			default:
				t.Errorf("creation %d: unsigned refused without naming sealgate:\n%s", r.i, r.out)
			}
		}
		if r.signed && restarted {
			signedAfter = append(signedAfter, r.err == nil)
		}
		if killAt[done] {
			kills++
			t.Logf("after %d creations: SIGKILL sealgate", done)
			s.signal(t, syscall.SIGKILL)
			<-s.exited
			time.Sleep(time.Second)
			s = n.start(t)
			restarted = true
		}
	}
	t.Logf("unsigned creations refused by: %v", refusedBy)
	if kills != len(killAt) {
		t.Fatalf("killed %d times, want %d", kills, len(killAt))
	}
	if ran := n.ranUnsigned(t); len(ran) > 0 {
		t.Errorf("unsigned containers ran: %v", ran)
	}
	ok := 0
	for _, b := range signedAfter {
		if b {
			ok++
		}
	}
	t.Logf("signed creations after a restart: %d of %d ran", ok, len(signedAfter))
	// After the last restart, signed images run again.
	if _, out, err := n.run(n.f.signedTag, "after-burst", nil); err != nil {
		t.Errorf("signed image after the restarts: %v\n%s", err, out)
	}
}

// TestTermThenCreate: `systemctl restart sealgate` stops it with SIGTERM;
// an unsigned image created while it is down is refused.
func TestTermThenCreate(t *testing.T) {
	n := newGatedNode(t, nil)
	s := n.start(t)
	if _, out, err := n.run(n.f.signedTag, "before", nil); err != nil {
		t.Fatalf("signed: %v\n%s", err, out)
	}
	s.signal(t, syscall.SIGTERM)
	<-s.exited
	_, out, err := n.run(n.f.unsignedTag, "while-down", nil)
	if err == nil {
		t.Fatalf("unsigned image ran while sealgate was stopped:\n%s", out)
	}
	if !strings.Contains(out, "sealgate") {
		t.Errorf("refusal does not name sealgate:\n%s", out)
	}
	if ran := n.ranUnsigned(t); len(ran) > 0 {
		t.Errorf("unsigned containers ran: %v", ran)
	}
}

// TestStopDuringCreate: sealgate is stopped (SIGSTOP) for longer than the
// runtime's 2 s request timeout while an unsigned image is created: refused.
// After SIGCONT sealgate is connected again and decides as before.
func TestStopDuringCreate(t *testing.T) {
	n := newGatedNode(t, nil)
	s := n.start(t)
	before := n.c.PluginConnections("sealgate")
	var cont sync.WaitGroup
	_, out, err := n.c.RunPod(podSpec(n.f.unsignedTag, "stopped", func() {
		s.signal(t, syscall.SIGSTOP)
		cont.Add(1)
		time.AfterFunc(3*time.Second, func() {
			defer cont.Done()
			_ = s.cmd.Process.Signal(syscall.SIGCONT)
		})
	}))
	cont.Wait()
	if err == nil {
		t.Fatalf("unsigned image ran while sealgate was stopped:\n%s", out)
	}
	t.Logf("refused while stopped:\n%s", out)
	if ran := n.ranUnsigned(t); len(ran) > 0 {
		t.Errorf("unsigned containers ran: %v", ran)
	}
	// Connected again: containerd dropped the plugin that timed out, and
	// sealgate dialled back; or it kept the connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, err := n.run(n.f.signedTag, fmt.Sprintf("after-cont-%d", time.Now().UnixNano()%1000), nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signed image refused 10 s after SIGCONT: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("NRI connections since the stop: %d", n.c.PluginConnections("sealgate")-before)
	if _, out, err := n.run(n.f.unsignedTag, "unsigned-after", nil); err == nil {
		t.Errorf("unsigned image ran after SIGCONT:\n%s", out)
	}
}

// TestAbsentAtBoot: with sealgate not started, no container is created and
// the error names sealgate; a pod with the documented escape annotation
// starts, and sealgate logs that escape, and names the unverified container
// it runs, when it next starts. doctor names it too.
func TestAbsentAtBoot(t *testing.T) {
	n := newGatedNode(t, nil)
	for _, img := range []string{n.f.signedTag, n.f.unsignedTag} {
		if err := n.c.Pull(img); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range []string{n.f.signedTag, n.f.unsignedTag} {
		_, out, err := n.run(img, "no-sealgate", nil)
		if err == nil {
			t.Fatalf("%s ran with sealgate absent:\n%s", img, out)
		}
		if !strings.Contains(out, "sealgate") {
			t.Errorf("refusal of %s does not name sealgate:\n%s", img, out)
		}
	}
	id, out, err := n.run(n.f.unsignedTag, "static", map[string]string{runtimegate.EscapeAnnotation: "true"})
	if err != nil {
		t.Fatalf("pod with the escape annotation refused while sealgate is absent: %v\n%s", err, out)
	}
	s := n.start(t)
	waitLog(t, s, 10*time.Second, "started without sealgate on the escape annotation", id)
	waitLog(t, s, 30*time.Second, "a running container's image is not allowed by the policy", "default/static", n.f.unsigned.DigestStr())

	out, code := sealgateCmd(t, "doctor", "--gate-socket", n.socket, "--containerd-bin", containerdBin(t),
		"--containerd-config", n.c.ConfigPath(), "--tpm", "none")
	if code != 1 {
		t.Errorf("doctor exit %d with an unverified container running, want 1:\n%s", code, out)
	}
	if miss := missing(out, "pod default/static container static image", n.f.unsigned.DigestStr()); len(miss) > 0 {
		t.Errorf("doctor output lacks %q:\n%s", miss, out)
	}
}

// TestContainerdRestarts: containerd restarted three times, 10 s apart,
// while sealgate runs: sealgate is connected again within a second each
// time, and decides as before.
func TestContainerdRestarts(t *testing.T) {
	n := newGatedNode(t, nil)
	n.start(t)
	for i := range 3 {
		before := n.c.PluginConnections("sealgate")
		t0 := time.Now()
		if err := n.c.Restart(); err != nil {
			t.Fatal(err)
		}
		ready := time.Now()
		for n.c.PluginConnections("sealgate") == 0 {
			if time.Since(ready) > 5*time.Second {
				t.Fatalf("restart %d: sealgate not connected 5 s after containerd was ready", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(ready)
		t.Logf("restart %d: containerd ready after %v, sealgate connected %v later (connections before: %d)", i+1, ready.Sub(t0), took, before)
		if took > time.Second {
			t.Errorf("restart %d: sealgate reconnected %v after containerd was ready, want within 1 s", i+1, took)
		}
		if _, out, err := n.run(n.f.unsignedTag, fmt.Sprintf("u%d", i), nil); err == nil {
			t.Errorf("restart %d: unsigned image ran:\n%s", i+1, out)
		}
		if _, out, err := n.run(n.f.signedTag, fmt.Sprintf("s%d", i), nil); err != nil {
			t.Errorf("restart %d: signed image refused: %v\n%s", i+1, err, out)
		}
		if i < 2 {
			time.Sleep(time.Until(t0.Add(10 * time.Second)))
		}
	}
}
