// Package runtimegate is sealgate's second gate, in the OCI runtime path.
//
// NRI alone does not fail closed on the runtimes people run: containerd 2.4
// (NRI v0.12.3) lets a container through when the plugin's connection closes
// or it misses the request timeout. So the runtime itself is wrapped: a small
// program configured as the runc runtime's BinaryName (the way GPU runtimes
// wrap runc) asks the sealgate daemon, over a unix socket only root can
// reach, whether the container it is about to create was allowed, and
// refuses when the daemon does not answer, has no record of it, or recorded
// another image. The daemon answers from the decision it already made at
// NRI CreateContainer time, so the check costs one local round trip.
//
// The package links only the standard library: the wrapper is a process
// started for every runc call, and its start-up is on the path of every
// container creation.
package runtimegate

import (
	"encoding/json"
	"strconv"
	"time"
)

// Defaults and the environment the wrapper reads. The wrapper inherits
// containerd's environment through the shim, so these are set (when at
// all) on containerd's unit.
const (
	// DefaultSocket is where the daemon answers the runtime gate. Its
	// directory is root-only (0700) and the daemon also checks that the
	// peer is root.
	DefaultSocket = "/run/sealgate/gate.sock"
	// SocketEnv overrides DefaultSocket for the wrapper.
	SocketEnv = "SEALGATE_GATE_SOCKET"
	// RuntimeEnv names the real runtime binary; without it the wrapper
	// runs the first "runc" on PATH that is not itself.
	RuntimeEnv = "SEALGATE_RUNC"
	// TimeoutEnv overrides DefaultTimeout (a Go duration, e.g. "2s").
	TimeoutEnv = "SEALGATE_GATE_TIMEOUT"
	// DefaultTimeout bounds one question to the daemon. A sandbox may
	// need a full decision (its NRI event comes only after it started),
	// which the daemon bounds by its own 1.5 s deadline.
	DefaultTimeout = 2 * time.Second
	// EscapeAnnotation is the pod annotation that lets a static pod the
	// node needs to boot start while sealgate is absent. It is the same
	// key that containerd's NRI default validator is configured with
	// (tolerate_missing_plugins_annotation) and is read the same way: on
	// the pod, as KEY, KEY/pod or KEY/container.NAME, with a boolean value.
	// containerd copies it into the OCI spec only for the pod_annotations
	// patterns of the runtime, which sealgate's drop-in sets.
	EscapeAnnotation = "tolerate-missing-plugins.sealgate.dev"
	// escapeSpool is the folder beside the socket where the wrapper leaves
	// a note for every escape it honoured, for the daemon to log.
	escapeSpool = "escaped"
)

// CRI annotations containerd puts in every spec it generates
// (internal/cri/annotations); the pod's own annotations cannot override
// them.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
)

// Annotations CRI-O puts in every spec it generates (pkg/annotations of
// CRI-O); the pod's own annotations cannot override them.
const (
	AnnotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	AnnotationCRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	// AnnotationCRIOImage is the image as requested (the pause image for
	// a sandbox).
	AnnotationCRIOImage     = "io.kubernetes.cri-o.Image"
	AnnotationCRIONamespace = "io.kubernetes.cri-o.Namespace"
	AnnotationCRIOKubeName  = "io.kubernetes.cri-o.KubeName"
	// AnnotationCRIOLabels holds the CRI labels as JSON (pod name and
	// namespace, container name, as kubelet sets them).
	AnnotationCRIOLabels = "io.kubernetes.cri-o.Labels"
)

// Kinds of container.
const (
	KindContainer = "container"
	KindSandbox   = "sandbox"
)

// Operations.
const (
	OpCheck  = "check"
	OpStatus = "status"
	// OpReload asks the daemon to reload its trust store now (sealgate
	// trust seal on a running node); the answer says whether the new one
	// was taken (Allowed) and, when not, why.
	OpReload = "reload"
	// OpPull asks the daemon to decide on an image containerd is about to
	// pull (Image and Digest), for containerd's image verifier.
	OpPull = "pull"
)

// maxMessage bounds a request or an answer on the socket.
const maxMessage = 1 << 20

// Request is one question to the daemon, one JSON line.
type Request struct {
	Op string `json:"op"`
	// ID is the container's ID, as the runtime (and NRI) know it.
	ID string `json:"id,omitempty"`
	// Kind is KindContainer or KindSandbox, from the spec; empty when
	// the spec does not say (not a CRI container).
	Kind string `json:"kind,omitempty"`
	// Image is the image name the container was created from
	// (AnnotationImageName, or AnnotationSandboxImageName for a sandbox).
	Image     string `json:"image,omitempty"`
	SandboxID string `json:"sandboxID,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`
	// Digest is the manifest digest of an image about to be pulled
	// (OpPull).
	Digest string `json:"digest,omitempty"`
	// Escape says the spec carries the static-pod escape (Escaped). The
	// daemon honours it only while it is not connected to the runtime,
	// which is when NRI's validator lets such a container by unasked.
	Escape bool `json:"escape,omitempty"`
}

// Answer is the daemon's reply, one JSON line.
type Answer struct {
	Allowed bool `json:"allowed"`
	// Reason says why, in words for the person who reads the runtime's
	// error.
	Reason string  `json:"reason,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status is what the daemon reports about itself, for `sealgate doctor`.
type Status struct {
	// Connected says whether the daemon is registered with the runtime.
	Connected      bool   `json:"connected"`
	Runtime        string `json:"runtime,omitempty"`
	RuntimeVersion string `json:"runtimeVersion,omitempty"`
	// Deadline is the daemon's decision deadline in force.
	Deadline string `json:"deadline,omitempty"`
	// InsecureNoTPM says the daemon runs without a TPM: its trust store
	// is not checked against a seal.
	InsecureNoTPM bool `json:"insecureNoTPM,omitempty"`
	// TrustDir, TrustGeneration and TrustDigest describe the sealed
	// trust store the daemon decides with.
	TrustDir        string `json:"trustDir,omitempty"`
	TrustGeneration uint64 `json:"trustGeneration,omitempty"`
	TrustDigest     string `json:"trustDigest,omitempty"`
	// ReloadsAccepted and ReloadsRefused count the trust store reloads
	// since the daemon started (a refused one left the old snapshot
	// deciding).
	ReloadsAccepted int64 `json:"reloadsAccepted,omitempty"`
	ReloadsRefused  int64 `json:"reloadsRefused,omitempty"`
	// Records is how many decisions the gate holds by container ID.
	Records  int   `json:"records"`
	Checks   int64 `json:"checks"`
	Refusals int64 `json:"refusals"`
	// Unverified lists running containers whose images the policy would
	// deny, as found when the daemon last synchronized with the runtime.
	Unverified []Running `json:"unverified"`
}

// Running names one running container.
type Running struct {
	ID        string   `json:"id"`
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container"`
	Image     string   `json:"image"`
	Digest    string   `json:"digest,omitempty"`
	Reasons   []string `json:"reasons,omitempty"`
}

// CheckRequest builds the question for container id from its spec's
// annotations.
func CheckRequest(id string, ann map[string]string) Request {
	if _, ok := ann[AnnotationCRIOContainerType]; ok {
		return crioCheckRequest(id, ann)
	}
	r := Request{
		Op:        OpCheck,
		ID:        id,
		Kind:      ann[AnnotationContainerType],
		SandboxID: ann[AnnotationSandboxID],
		Namespace: ann[AnnotationSandboxNamespace],
		Pod:       ann[AnnotationSandboxName],
		Container: ann[AnnotationContainerName],
		Image:     ann[AnnotationImageName],
	}
	if r.Kind == KindSandbox {
		r.Image = ann[AnnotationSandboxImageName]
	}
	r.Escape = Escaped(ann)
	return r
}

// crioCheckRequest reads a spec CRI-O generated. There is no escape on
// CRI-O: it has no required plugins, so nothing lets a container by
// unasked that the wrapper would have to match.
func crioCheckRequest(id string, ann map[string]string) Request {
	r := Request{
		Op:        OpCheck,
		ID:        id,
		Kind:      ann[AnnotationCRIOContainerType],
		SandboxID: ann[AnnotationCRIOSandboxID],
		Namespace: ann[AnnotationCRIONamespace],
		Pod:       ann[AnnotationCRIOKubeName],
		Image:     ann[AnnotationCRIOImage],
	}
	var labels map[string]string
	if l := ann[AnnotationCRIOLabels]; l != "" && len(l) < maxMessage && json.Unmarshal([]byte(l), &labels) == nil {
		if v := labels["io.kubernetes.pod.namespace"]; v != "" {
			r.Namespace = v
		}
		if v := labels["io.kubernetes.pod.name"]; v != "" {
			r.Pod = v
		}
		r.Container = labels["io.kubernetes.container.name"]
	}
	return r
}

// Escaped reports whether the spec's annotations carry the escape for this
// container, read as NRI's default validator reads it: the most specific of
// KEY/container.NAME, KEY/pod and KEY decides, and a value that is not a
// boolean is no escape.
func Escaped(ann map[string]string) bool {
	keys := []string{EscapeAnnotation + "/pod", EscapeAnnotation}
	if name := ann[AnnotationContainerName]; name != "" {
		keys = append([]string{EscapeAnnotation + "/container." + name}, keys...)
	}
	for _, k := range keys {
		if v, ok := ann[k]; ok {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	return false
}
