package testenv

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is where Debian's busybox-static package puts its statically
// linked busybox, the one binary a runnable test image needs.
const BusyboxPath = "/bin/busybox"

// busyboxLinks are the applets linked in /bin of BusyboxImage.
var busyboxLinks = []string{"sh", "sleep", "echo", "cat", "true", "ls"}

// epoch is the modification time of every file in the images made here, so
// that the same inputs always give the same digests.
var epoch = time.Unix(0, 0).UTC()

// RandomImage returns a small image that cannot run: one layer of
// pseudo-random bytes drawn from seed. The same seed gives the same digest
// and different seeds give different digests, so tests can name images by
// number and compare digests across runs.
func RandomImage(seed int64) (v1.Image, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5ea19a7e))
	data := make([]byte, 512)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	layer, err := tarLayer([]tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/%d", seed), Mode: 0o644}, body: data},
	})
	if err != nil {
		return nil, fmt.Errorf("random image: %w", err)
	}
	img, err := newImage(v1.Config{Labels: map[string]string{"dev.sealgate.test.seed": fmt.Sprint(seed)}}, layer)
	if err != nil {
		return nil, fmt.Errorf("random image: %w", err)
	}
	return img, nil
}

var (
	busyboxOnce  sync.Once
	busyboxLayer v1.Layer
	busyboxErr   error
)

// BusyboxImage returns a runnable image: Debian's static /bin/busybox as
// /bin/busybox with /bin/sh, sleep, echo, cat, true and ls linked to it,
// config Cmd set to cmd. With no cmd the image sleeps forever, which makes it
// usable as a pod sandbox (pause) image. The platform is linux/runtime.GOARCH.
// It returns an error wrapping ErrToolNotFound when busybox-static is not
// installed, so callers can skip.
func BusyboxImage(cmd ...string) (v1.Image, error) {
	busyboxOnce.Do(func() { busyboxLayer, busyboxErr = newBusyboxLayer() })
	if busyboxErr != nil {
		return nil, busyboxErr
	}
	if len(cmd) == 0 {
		cmd = []string{"sleep", "infinity"}
	}
	img, err := newImage(v1.Config{
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:        append([]string(nil), cmd...),
		WorkingDir: "/",
	}, busyboxLayer)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return img, nil
}

func newBusyboxLayer() (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("busybox image: %s (Debian busybox-static): %w", BusyboxPath, ErrToolNotFound)
		}
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("busybox image: %s: %w", BusyboxPath, err)
	}
	entries := []tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, body: bin},
	}
	for _, l := range busyboxLinks {
		entries = append(entries, tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + l, Linkname: "busybox", Mode: 0o777}})
	}
	for _, d := range []string{"dev/", "etc/", "proc/", "sys/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		entries = append(entries, tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}})
	}
	layer, err := tarLayer(entries)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return layer, nil
}

// checkStatic refuses a dynamically linked busybox (Debian's "busybox"
// package rather than "busybox-static"): it would not run in an image that
// has no libc.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked; install busybox-static: %w", ErrToolNotFound)
		}
	}
	return nil
}

// platforms lists the platforms Index gives to children after the first,
// skipping the host's.
var platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
	{OS: "linux", Architecture: "ppc64le"},
	{OS: "linux", Architecture: "s390x"},
	{OS: "linux", Architecture: "riscv64"},
	{OS: "linux", Architecture: "386"},
}

// Index returns an OCI image index of children: the first child is listed
// for linux/runtime.GOARCH, so a runtime on this host selects it, and the
// others for other platforms. The children are not changed, so their digests
// are the ones the caller already knows.
func Index(children ...v1.Image) (v1.ImageIndex, error) {
	if len(children) == 0 {
		return nil, fmt.Errorf("index: no children")
	}
	var others []v1.Platform
	for _, p := range platforms {
		if p.Architecture != runtime.GOARCH {
			others = append(others, p)
		}
	}
	if len(children)-1 > len(others) {
		return nil, fmt.Errorf("index: %d children, at most %d platforms", len(children), len(others)+1)
	}
	adds := make([]mutate.IndexAddendum, len(children))
	for i, c := range children {
		p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
		if i > 0 {
			p = others[i-1]
		}
		mt, err := c.MediaType()
		if err != nil {
			return nil, fmt.Errorf("index: child %d: %w", i, err)
		}
		adds[i] = mutate.IndexAddendum{Add: c, Descriptor: v1.Descriptor{MediaType: mt, Platform: &p}}
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...), nil
}

// newImage makes an OCI image of layers with the given runtime config, for
// linux/runtime.GOARCH and with fixed timestamps.
func newImage(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layers...)
}

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

// tarLayer packs entries into a gzip-compressed OCI layer with fixed
// ownership and times.
func tarLayer(entries []tarEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Uid, h.Gid, h.Format = epoch, 0, 0, tar.FormatPAX
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", h.Name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("tar %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
