package testenv

import (
	"errors"
	"os"
	"slices"
	"testing"
)

// TestCRIONode: a CRI-O node from the tools runs a busybox pod pulled from
// a registry on 127.0.0.1 (host network, vfs, cgroupfs), through runc or,
// without CAP_SYS_RESOURCE, the runcclamp wrapper; Stop leaves nothing.
func TestCRIONode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CRI-O")
	}
	reg := NewRegistry(t, RegistryOptions{})
	sandboxImg, err := BusyboxImage("sh", "-c", `trap "exit 0" TERM; while true; do sleep 1; done`)
	if errors.Is(err, ErrToolNotFound) {
		RequireTool(t, "busybox")
	}
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := reg.Push(sandboxImg, "sandbox:v1")
	if err != nil {
		t.Fatal(err)
	}
	appImg, err := BusyboxImage("sleep", "3600")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(appImg, "app:v1"); err != nil {
		t.Fatal(err)
	}
	c := NewCRIO(t, CRIOOptions{PauseImage: sandbox.String(), InsecureRegistries: []string{reg.Addr}})
	id, out, err := c.Run(reg.Ref("app:v1"), "app", "default")
	if err != nil {
		t.Fatalf("run: %v\n%s\nCRI-O log:\n%s", err, out, c.LogTail(40))
	}
	state, err := c.ContainerState(id)
	if err != nil || state != "CONTAINER_RUNNING" {
		t.Fatalf("state %s %v", state, err)
	}
	ids, err := c.Containers()
	if err != nil || !slices.Contains(ids, id) {
		t.Errorf("crictl ps -a = %q %v, want %s", ids, err, id)
	}
	dir := c.Dir
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}
