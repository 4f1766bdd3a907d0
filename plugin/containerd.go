package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	eventstypes "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// namespaceHeader is the gRPC header containerd reads the namespace from.
const namespaceHeader = "containerd-namespace"

// maxContainerdMessage bounds a containerd reply, as containerd's own
// client does.
const maxContainerdMessage = 16 << 20

// ContainerdResolver answers Resolver questions from containerd's own
// metadata store (the image a pod sandbox was created from, the digest an
// image name was pulled at) and says which containers run. It never
// contacts a registry. It speaks containerd's gRPC API directly (images,
// containers, events and tasks services) rather than through containerd's
// full client, which it would link for four calls.
type ContainerdResolver struct {
	conn       *grpc.ClientConn
	images     imagesapi.ImagesClient
	containers containersapi.ContainersClient
	events     eventsapi.EventsClient
	tasks      tasksapi.TasksClient
	namespace  string
}

var (
	_ Resolver      = (*ContainerdResolver)(nil)
	_ RunningLister = (*ContainerdResolver)(nil)
)

// NewContainerdResolver prepares the connection to containerd's socket at
// address (made at the first call); namespace is the CRI's namespace
// ("k8s.io").
func NewContainerdResolver(address, namespace string) (*ContainerdResolver, error) {
	if address == "" {
		return nil, errors.New("connect to containerd: no address")
	}
	conn, err := grpc.NewClient("unix://"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxContainerdMessage), grpc.MaxCallSendMsgSize(maxContainerdMessage)))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	return &ContainerdResolver{
		conn:       conn,
		images:     imagesapi.NewImagesClient(conn),
		containers: containersapi.NewContainersClient(conn),
		events:     eventsapi.NewEventsClient(conn),
		tasks:      tasksapi.NewTasksClient(conn),
		namespace:  namespace,
	}, nil
}

// inNamespace tells containerd which namespace a call is about.
func (r *ContainerdResolver) inNamespace(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, namespaceHeader, r.namespace)
}

// ImageDigest returns the target digest of the image record name.
func (r *ContainerdResolver) ImageDigest(ctx context.Context, name string) (string, error) {
	resp, err := r.images.Get(r.inNamespace(ctx), &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return "", fmt.Errorf("look up image %s in containerd: %w", name, err)
	}
	if resp.GetImage().GetTarget().GetDigest() == "" {
		return "", fmt.Errorf("look up image %s in containerd: no target digest", name)
	}
	return resp.GetImage().GetTarget().GetDigest(), nil
}

// SandboxImage returns the image of the sandbox container of pod podID
// (containerd's pod sandbox controller names it after the pod).
func (r *ContainerdResolver) SandboxImage(ctx context.Context, podID string) (string, string, error) {
	resp, err := r.containers.Get(r.inNamespace(ctx), &containersapi.GetContainerRequest{ID: podID})
	if err != nil {
		return "", "", fmt.Errorf("look up sandbox container %s in containerd: %w", podID, err)
	}
	image := resp.GetContainer().GetImage()
	if image == "" {
		return "", "", fmt.Errorf("sandbox container %s has no image", podID)
	}
	digest, err := r.ImageDigest(ctx, image)
	if err != nil {
		return "", "", err
	}
	return image, digest, nil
}

// RunningContainers returns the IDs of the containers (and sandboxes)
// whose task is alive: created, running or paused. A container whose
// process exited has its task deleted by the CRI.
func (r *ContainerdResolver) RunningContainers(ctx context.Context) (map[string]bool, error) {
	resp, err := r.tasks.List(r.inNamespace(ctx), &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containerd's tasks: %w", err)
	}
	out := make(map[string]bool, len(resp.GetTasks()))
	for _, t := range resp.GetTasks() {
		if s := t.GetStatus(); s != tasktypes.Status_STOPPED && s != tasktypes.Status_UNKNOWN {
			// A task's ID is its container's; containerd leaves
			// ContainerID empty in the list.
			out[t.GetID()] = true
			if id := t.GetContainerID(); id != "" {
				out[id] = true
			}
		}
	}
	return out, nil
}

// Close closes the containerd connection.
func (r *ContainerdResolver) Close() error { return r.conn.Close() }

// WatchPulls calls pulled for every image containerd creates or updates in
// the resolver's namespace (a pull, or a tag moved to a new digest), until
// ctx ends or the event stream fails. Image IDs (bare "sha256:…" names)
// are skipped: the CRI records the same image under its reference too.
func (r *ContainerdResolver) WatchPulls(ctx context.Context, pulled func(name, digest string)) error {
	stream, err := r.events.Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: []string{`topic=="/images/create"`, `topic=="/images/update"`}})
	if err != nil {
		return fmt.Errorf("containerd events: %w", err)
	}
	for {
		env, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("containerd events: %w", err)
		}
		if env.GetNamespace() != r.namespace || env.GetEvent() == nil {
			continue
		}
		ev, err := typeurl.UnmarshalAny(env.GetEvent())
		if err != nil {
			continue
		}
		var name string
		switch e := ev.(type) {
		case *eventstypes.ImageCreate:
			name = e.Name
		case *eventstypes.ImageUpdate:
			name = e.Name
		default:
			continue
		}
		if name == "" || strings.HasPrefix(name, "sha256:") {
			continue
		}
		digest, err := r.ImageDigest(ctx, name)
		if err != nil {
			continue
		}
		pulled(name, digest)
	}
}
