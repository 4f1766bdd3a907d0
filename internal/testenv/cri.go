package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CRI drives a node's CRI endpoint with crictl, as kubelet would drive it:
// the part the containerd and CRI-O nodes share.
type CRI struct {
	crictl   string // the crictl binary
	endpoint string // the CRI's unix socket
	config   string // crictl.yaml
	podsDir  string // pod specs and logs
	cgroup   string // the pods' cgroup parent
}

// node is a runtime a test starts and stops: containerd or CRI-O.
type node interface {
	LogTail(n int) string
	Stop() error
}

// newNode is what NewContainerd and NewCRIO share: the tools and root
// required (skipping, or failing with SEALGATE_REQUIRE_TOOLS=1), the node
// started, and stopped when the test ends, with its log's tail when the
// test failed.
func newNode[N node](t testing.TB, what string, tools []string, start func() (N, error)) N {
	t.Helper()
	for _, name := range tools {
		RequireTool(t, name)
	}
	if os.Geteuid() != 0 {
		if os.Getenv(EnvRequireTools) == "1" {
			t.Fatalf("%s node: needs root (euid %d)", what, os.Geteuid())
		}
		t.Skipf("%s node: needs root (euid %d)", what, os.Geteuid())
	}
	n, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log (last 60 lines):\n%s", what, n.LogTail(60))
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stop %s: %v", what, err)
		}
	})
	return n
}

// layout names the CRI's files under the node's dir.
func (c *CRI) layout(dir, endpoint string) {
	c.endpoint = endpoint
	c.config = filepath.Join(dir, "crictl.yaml")
	c.podsDir = filepath.Join(dir, "pods")
	c.cgroup = "/sg-" + randHex(4)
}

// writeConfig writes crictl.yaml for the endpoint.
func (c *CRI) writeConfig() error {
	if err := os.MkdirAll(c.podsDir, 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\ndebug: false\npull-image-on-create: false\n", c.endpoint, c.endpoint)
	return os.WriteFile(c.config, []byte(cfg), 0o600)
}

// Crictl runs crictl against this node and returns its combined output.
func (c *CRI) Crictl(args ...string) (string, error) {
	return c.crictlCtx(2*time.Minute, args...)
}

func (c *CRI) crictlCtx(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"--config", c.config,
		"--runtime-endpoint", "unix://" + c.endpoint, "--image-endpoint", "unix://" + c.endpoint}, args...)
	cmd := exec.CommandContext(ctx, c.crictl, full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		name := "crictl"
		if len(args) > 0 {
			name += " " + args[0]
		}
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

// Pull pulls image through the CRI, as kubelet does before creating a
// container.
func (c *CRI) Pull(image string) error {
	out, err := c.Crictl("pull", image)
	if err != nil {
		return fmt.Errorf("pull %s: %w: %s", image, err, strings.TrimSpace(out))
	}
	return nil
}

// Run does what kubelet does for a one-container pod: pull the image if it
// is not there yet, run a
// pod sandbox in the host network, create the container (the step NRI
// plugins gate) and start it. out is crictl's combined output of every step;
// on a refused create it carries the runtime's error, e.g. sealgate's deny
// message. A pod whose container could not be created is removed again.
func (c *CRI) Run(image, name, namespace string, cmd ...string) (containerID string, out string, err error) {
	return c.RunPod(PodSpec{Image: image, Name: name, Namespace: namespace, Cmd: cmd})
}

// PodSpec is a one-container pod for RunPod.
type PodSpec struct {
	Image, Name, Namespace string
	Cmd                    []string
	// Annotations are the pod's annotations (sealgate's static-pod
	// escape, for one).
	Annotations map[string]string
	// BeforeCreate, when set, runs once the pod sandbox is up, just
	// before the container is created.
	BeforeCreate func()
}

// RunPod is Run with the pod's annotations.
func (c *CRI) RunPod(spec PodSpec) (containerID string, out string, err error) {
	image, name, namespace, cmd := spec.Image, spec.Name, spec.Namespace, spec.Cmd
	if namespace == "" {
		namespace = "default"
	}
	var all strings.Builder
	step := func(args ...string) (string, error) {
		o, err := c.Crictl(args...)
		all.WriteString(o)
		return strings.TrimSpace(o), err
	}
	// Like kubelet's IfNotPresent: an image already in the store is not
	// pulled again (so that a node whose registry is down still runs it).
	if _, err := c.Crictl("inspecti", image); err != nil {
		if _, err := step("pull", image); err != nil {
			return "", all.String(), fmt.Errorf("run %s: %w", image, err)
		}
	}

	podDir := filepath.Join(c.podsDir, name+"-"+randHex(4))
	if err := os.MkdirAll(filepath.Join(podDir, "logs"), 0o700); err != nil {
		return "", all.String(), fmt.Errorf("run %s: %w", image, err)
	}
	uid := randHex(16)
	// The labels kubelet sets, so that crictl ps and NRI plugins see the
	// pod's name and namespace as on a real node.
	labels := map[string]string{
		"io.kubernetes.pod.name":      name,
		"io.kubernetes.pod.namespace": namespace,
		"io.kubernetes.pod.uid":       uid,
	}
	pod := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": namespace, "uid": uid, "attempt": 0},
		"labels":        labels,
		"log_directory": filepath.Join(podDir, "logs"),
		"linux": map[string]any{
			"cgroup_parent": c.cgroup,
			"security_context": map[string]any{
				// NODE: no CNI needed.
				"namespace_options": map[string]any{"network": 2},
			},
		},
	}
	if len(spec.Annotations) > 0 {
		pod["annotations"] = spec.Annotations
	}
	ctr := map[string]any{
		"metadata": map[string]any{"name": name, "attempt": 0},
		"labels":   mergeLabels(labels, map[string]string{"io.kubernetes.container.name": name}),
		"image":    map[string]any{"image": image},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	if len(cmd) > 0 {
		ctr["command"] = cmd
	}
	podFile, ctrFile := filepath.Join(podDir, "pod.json"), filepath.Join(podDir, "container.json")
	for f, v := range map[string]any{podFile: pod, ctrFile: ctr} {
		data, _ := json.Marshal(v)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return "", all.String(), fmt.Errorf("run %s: %w", image, err)
		}
	}

	podID, err := step("runp", podFile)
	if err != nil {
		return "", all.String(), fmt.Errorf("run %s: %w", image, err)
	}
	podID = lastLine(podID)
	if spec.BeforeCreate != nil {
		spec.BeforeCreate()
	}
	ctrID, err := step("create", "--no-pull", podID, ctrFile, podFile)
	if err != nil {
		// Leave nothing behind: the caller asked for a container, not a pod.
		_, _ = c.Crictl("stopp", podID)
		_, _ = c.Crictl("rmp", "-f", podID)
		return "", all.String(), fmt.Errorf("run %s: %w", image, err)
	}
	ctrID = lastLine(ctrID)
	if _, err := step("start", ctrID); err != nil {
		return ctrID, all.String(), fmt.Errorf("run %s: %w", image, err)
	}
	return ctrID, all.String(), nil
}

// ContainerState is the CRI state of a container, e.g. "CONTAINER_RUNNING".
func (c *CRI) ContainerState(containerID string) (string, error) {
	out, err := c.Crictl("inspect", "-o", "json", containerID)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w: %s", containerID, err, strings.TrimSpace(out))
	}
	var v struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return "", fmt.Errorf("inspect %s: %w", containerID, err)
	}
	return v.Status.State, nil
}

// Containers lists the IDs of all containers the CRI knows, running or not
// (`crictl ps -a -q`).
func (c *CRI) Containers() ([]string, error) {
	out, err := c.Crictl("ps", "-a", "-q")
	if err != nil {
		return nil, fmt.Errorf("list containers: %w: %s", err, strings.TrimSpace(out))
	}
	return strings.Fields(out), nil
}
