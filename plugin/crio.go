package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The annotations CRI-O puts on every container (and NRI passes on; CRI-O
// sends no image field).
const (
	// crioImageAnnotation is the image as requested: under kubelet, what
	// PullImage returned (repo@sha256:<platform manifest>); under crictl,
	// what was given (a tag).
	crioImageAnnotation = "io.kubernetes.cri-o.Image"
	// crioImageNameAnnotation is one name of the image (a tag when it has
	// one).
	crioImageNameAnnotation = "io.kubernetes.cri-o.ImageName"
	// crioImageRefAnnotation is the image ID (its config digest, hex).
	crioImageRefAnnotation = "io.kubernetes.cri-o.ImageRef"
)

// ContainerImager finds what a container runs from its annotations, for
// runtimes that send no image in the NRI request (CRI-O).
type ContainerImager interface {
	ContainerImage(ctx context.Context, annotations map[string]string) (ImageOf, error)
}

// ImageOf is what a container runs, as the runtime's image store says.
type ImageOf struct {
	// Image is the image's name, for rule matching.
	Image string
	// Digest is the manifest the runtime pulled; on CRI-O a platform
	// manifest even when the tag names an index. Empty when the store
	// records several for the name: Candidates lists them.
	Digest     string
	Candidates []string
	// Tag is a tag it was pulled through, "" when none is known.
	Tag string
}

// CRIOResolver answers Resolver questions from CRI-O's image store through
// the CRI (ImageService.ImageStatus, RuntimeService.Status and
// ListContainers). It never contacts a registry.
type CRIOResolver struct {
	conn    *grpc.ClientConn
	images  runtimeapi.ImageServiceClient
	runtime runtimeapi.RuntimeServiceClient
}

var (
	_ Resolver        = (*CRIOResolver)(nil)
	_ RunningLister   = (*CRIOResolver)(nil)
	_ ContainerImager = (*CRIOResolver)(nil)
)

// DefaultCRIOAddress is CRI-O's CRI socket.
const DefaultCRIOAddress = "/var/run/crio/crio.sock"

// NewCRIOResolver prepares the connection to CRI-O's CRI socket (made at
// the first call).
func NewCRIOResolver(address string) (*CRIOResolver, error) {
	if address == "" {
		return nil, errors.New("connect to CRI-O: no address")
	}
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(address, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxContainerdMessage)))
	if err != nil {
		return nil, fmt.Errorf("connect to CRI-O at %s: %w", address, err)
	}
	return &CRIOResolver{conn: conn, images: runtimeapi.NewImageServiceClient(conn), runtime: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the connection.
func (r *CRIOResolver) Close() error { return r.conn.Close() }

// status returns the image record CRI-O holds for ref (a name or an ID).
func (r *CRIOResolver) status(ctx context.Context, ref string) (*runtimeapi.Image, error) {
	resp, err := r.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return nil, fmt.Errorf("CRI-O image status of %s: %w", ref, err)
	}
	if resp.GetImage() == nil {
		return nil, fmt.Errorf("CRI-O has no image %s", ref)
	}
	return resp.GetImage(), nil
}

// repoDigest returns the one digest img's repoDigests give for repo.
// CRI-O pairs every name of an image with every digest it was pulled at,
// including pairs that never existed: more than one digest for the
// repository is ambiguous and never chosen from.
func repoDigest(img *runtimeapi.Image, repo name.Repository) (string, error) {
	digests := repoDigests(img, repo)
	switch len(digests) {
	case 0:
		return "", fmt.Errorf("CRI-O records no digest of %s for image %s (repo digests %v)", repo.Name(), img.GetId(), img.GetRepoDigests())
	case 1:
		return digests[0], nil
	}
	return "", fmt.Errorf("CRI-O records %d digests of %s for image %s (%v): ambiguous, none is taken", len(digests), repo.Name(), img.GetId(), digests)
}

// repoDigests returns the distinct digests img's repoDigests give for
// repo, in their order.
func repoDigests(img *runtimeapi.Image, repo name.Repository) []string {
	var digests []string
	for _, rd := range img.GetRepoDigests() {
		d, err := name.NewDigest(rd, name.WeakValidation)
		if err != nil || d.Context().Name() != repo.Name() {
			continue
		}
		if !slices.Contains(digests, d.DigestStr()) {
			digests = append(digests, d.DigestStr())
		}
	}
	return digests
}

// ImageDigest returns the digest CRI-O pulled the image name at.
func (r *CRIOResolver) ImageDigest(ctx context.Context, ref string) (string, error) {
	n, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	if d, ok := n.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	img, err := r.status(ctx, ref)
	if err != nil {
		return "", err
	}
	return repoDigest(img, n.Context())
}

// ContainerImage implements ContainerImager from CRI-O's annotations and
// its image store.
func (r *CRIOResolver) ContainerImage(ctx context.Context, ann map[string]string) (ImageOf, error) {
	requested, imageName, id := ann[crioImageAnnotation], ann[crioImageNameAnnotation], ann[crioImageRefAnnotation]
	if requested == "" {
		requested = imageName
	}
	if requested == "" || id == "" {
		return ImageOf{}, fmt.Errorf("CRI-O sent no %s and %s annotations", crioImageAnnotation, crioImageRefAnnotation)
	}
	ref, err := name.ParseReference(requested, name.WeakValidation)
	if err != nil {
		return ImageOf{}, fmt.Errorf("image %q: %w", requested, err)
	}
	img, err := r.status(ctx, id)
	if err != nil {
		return ImageOf{}, err
	}
	// A tag it was pulled through: the one requested, or its name.
	tag := ""
	for _, cand := range []string{requested, imageName} {
		if strings.Contains(cand, "@") {
			continue
		}
		if t, err := name.NewTag(cand, name.WeakValidation); err == nil && t.Context().Name() == ref.Context().Name() {
			tag = t.String()
			break
		}
	}
	if d, ok := ref.(name.Digest); ok {
		// Requested by digest (kubelet): that digest must be one CRI-O
		// records for this image, or the name says something else than
		// what runs.
		if !slices.Contains(img.GetRepoDigests(), d.String()) && !slices.Contains(img.GetRepoDigests(), d.Context().Name()+"@"+d.DigestStr()) {
			return ImageOf{}, fmt.Errorf("CRI-O's image %s does not record %s", id, d)
		}
		return ImageOf{Image: requested, Digest: d.DigestStr(), Tag: tag}, nil
	}
	digests := repoDigests(img, ref.Context())
	switch {
	case len(digests) == 1:
		return ImageOf{Image: requested, Digest: digests[0], Tag: tag}, nil
	case len(digests) > 1 && tag != "":
		// Pulled by tag: CRI-O records the index and the platform
		// manifest; which is which is asked of the registry.
		return ImageOf{Image: requested, Candidates: digests, Tag: tag}, nil
	}
	_, err = repoDigest(img, ref.Context())
	return ImageOf{}, err
}

// SandboxImage returns CRI-O's pause image and its digest: CRI-O creates
// the sandbox from the image its configuration names, reported in the
// runtime's verbose status.
func (r *CRIOResolver) SandboxImage(ctx context.Context, _ string) (string, string, error) {
	resp, err := r.runtime.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return "", "", fmt.Errorf("CRI-O status: %w", err)
	}
	var cfg struct {
		SandboxImage string `json:"sandboxImage"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["config"]), &cfg); err != nil || cfg.SandboxImage == "" {
		return "", "", fmt.Errorf("CRI-O's status names no sandbox image (%v)", err)
	}
	digest, err := r.ImageDigest(ctx, cfg.SandboxImage)
	if err != nil {
		return "", "", err
	}
	return cfg.SandboxImage, digest, nil
}

// RunningContainers implements RunningLister: the containers CRI-O has
// created or running.
func (r *CRIOResolver) RunningContainers(ctx context.Context) (map[string]bool, error) {
	resp, err := r.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list CRI-O's containers: %w", err)
	}
	out := map[string]bool{}
	for _, c := range resp.GetContainers() {
		if s := c.GetState(); s == runtimeapi.ContainerState_CONTAINER_RUNNING || s == runtimeapi.ContainerState_CONTAINER_CREATED {
			out[c.GetId()] = true
		}
	}
	return out, nil
}

// PulledImage is an image in the runtime's store under a name, at the one
// digest the store records for that name.
type PulledImage struct {
	ID, Image, Digest string
	// Tag is the tag the image was pulled through, when CRI-O records
	// one: its containers are decided through it, and so is the image.
	Tag string
}

// Images lists CRI-O's images (ListImages): for each image and each
// repository it records exactly one digest for, the image's name (a tag of
// that repository when it has one) and that digest. A repository recorded
// with several digests is left out: CRI-O pairs names and digests that
// never went together, and which one is real is decided at creation.
func (r *CRIOResolver) Images(ctx context.Context) ([]PulledImage, error) {
	resp, err := r.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list CRI-O's images: %w", err)
	}
	var out []PulledImage
	for _, img := range resp.GetImages() {
		repos := map[string]bool{}
		for _, rd := range img.GetRepoDigests() {
			if d, err := name.NewDigest(rd, name.WeakValidation); err == nil {
				repos[d.Context().Name()] = true
			}
		}
		for repo := range repos {
			rp, err := name.NewRepository(repo, name.WeakValidation)
			if err != nil {
				continue
			}
			digest, err := repoDigest(img, rp)
			if err != nil {
				continue
			}
			ref, through := rp.Name()+"@"+digest, ""
			for _, tag := range img.GetRepoTags() {
				if t, err := name.NewTag(tag, name.WeakValidation); err == nil && t.Context().Name() == rp.Name() {
					ref, through = t.String(), t.String()
					break
				}
			}
			out = append(out, PulledImage{ID: img.GetId(), Image: ref, Digest: digest, Tag: through})
		}
	}
	return out, nil
}
