package kubernetes_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestDaemonSet decodes the manifest strictly against the Kubernetes API
// types (no kubelet runs here) and checks what the node needs of it.
func TestDaemonSet(t *testing.T) {
	data, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(data, []byte("\n---\n"))
	if len(docs) != 2 {
		t.Fatalf("%d documents, want a Namespace and a DaemonSet", len(docs))
	}
	var ns corev1.Namespace
	if err := yaml.UnmarshalStrict(docs[0], &ns); err != nil || ns.Kind != "Namespace" || ns.Name != "sealgate" {
		t.Fatalf("namespace: %v %+v", err, ns)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(docs[1], &ds); err != nil {
		t.Fatalf("the DaemonSet does not decode strictly: %v", err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" || ds.Namespace != "sealgate" {
		t.Errorf("object %s %s in %q", ds.APIVersion, ds.Kind, ds.Namespace)
	}
	pod := ds.Spec.Template
	if pod.Annotations["tolerate-missing-plugins.sealgate.dev"] != "true" {
		t.Error("the pod lacks the escape annotation: it could never start while sealgate is absent")
	}
	if !selects(ds.Spec.Selector.MatchLabels, pod.Labels) {
		t.Error("the selector does not select the pod template")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	cmd := strings.Join(c.Command, " ")
	for _, want := range []string{"sealgate run", "--trust-dir=/etc/sealgate", "--tpm=/dev/tpmrm0", "--nri-socket=/var/run/nri/nri.sock", "--gate-socket=/run/sealgate/gate.sock", "--state-dir=/var/lib/sealgate"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command lacks %q: %s", want, cmd)
		}
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil || !slices.Contains(c.ReadinessProbe.Exec.Command, "--ready") {
		t.Error("no readiness probe on doctor --ready")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not from the host", v.Name)
			continue
		}
		hostPaths[v.Name] = v.HostPath.Path
		if m, ok := mounts[v.Name]; !ok || m.MountPath != v.HostPath.Path {
			t.Errorf("volume %s (%s) is not mounted at the same path: %+v", v.Name, v.HostPath.Path, m)
		}
	}
	for _, p := range []string{"/var/run/nri", "/dev/tpmrm0", "/etc/sealgate", "/var/lib/sealgate", "/run/sealgate"} {
		if !slices.Contains(mapsValues(hostPaths), p) {
			t.Errorf("the host's %s is not given to the pod", p)
		}
	}
	if !mounts["trust"].ReadOnly {
		t.Error("the trust store is writable from the pod")
	}
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func mapsValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
