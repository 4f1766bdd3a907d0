package testenv

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestRandomImageDeterministic(t *testing.T) {
	seen := map[v1.Hash]int64{}
	for _, seed := range []int64{0, 1, 2, -1, 1 << 40} {
		a, err := RandomImage(seed)
		if err != nil {
			t.Fatal(err)
		}
		b, err := RandomImage(seed)
		if err != nil {
			t.Fatal(err)
		}
		da, db := digestOf(t, a), digestOf(t, b)
		if da != db {
			t.Errorf("seed %d: digests differ between calls: %s, %s", seed, da, db)
		}
		if other, dup := seen[da]; dup {
			t.Errorf("seeds %d and %d give the same digest %s", other, seed, da)
		}
		seen[da] = seed
		cf, err := a.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("seed %d: platform %s/%s", seed, cf.OS, cf.Architecture)
		}
	}
}

// files lists a single-layer image's tar entries by name.
func files(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(h.Name, "/")] = h
	}
}

func busybox(t *testing.T, cmd ...string) v1.Image {
	t.Helper()
	img, err := BusyboxImage(cmd...)
	if errors.Is(err, ErrToolNotFound) {
		if os.Getenv(EnvRequireTools) == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBusyboxImageContent(t *testing.T) {
	img := busybox(t, "echo", "hello")
	fs := files(t, img)
	bb, ok := fs["bin/busybox"]
	if !ok {
		t.Fatalf("no bin/busybox in %v", fs)
	}
	if bb.Typeflag != tar.TypeReg || bb.Mode&0o777 != 0o755 {
		t.Errorf("bin/busybox: type %c mode %o, want regular 0755", bb.Typeflag, bb.Mode)
	}
	if fi, err := os.Stat(BusyboxPath); err == nil && fi.Size() != bb.Size {
		t.Errorf("bin/busybox size %d, want %d", bb.Size, fi.Size())
	}
	for _, l := range []string{"sh", "sleep", "echo", "cat", "true", "ls"} {
		h, ok := fs["bin/"+l]
		if !ok || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v, want symlink to busybox", l, h)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Cmd, []string{"echo", "hello"}) {
		t.Errorf("Cmd = %q", cf.Config.Cmd)
	}
	if !slices.ContainsFunc(cf.Config.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") && strings.Contains(e, "/bin") }) {
		t.Errorf("Env = %q, want a PATH with /bin", cf.Config.Env)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}

	// Different commands: same layer, different images; same command: same digest.
	other := busybox(t, "sleep", "1")
	if digestOf(t, other) == digestOf(t, img) {
		t.Error("different Cmd gave the same digest")
	}
	if digestOf(t, busybox(t, "echo", "hello")) != digestOf(t, img) {
		t.Error("same Cmd gave a different digest")
	}
	if cf, _ := busybox(t).ConfigFile(); len(cf.Config.Cmd) == 0 {
		t.Error("default Cmd is empty; the image would not run as a sandbox")
	}
}

// TestBusyboxImageRuns unpacks the image and runs its shell under chroot, to
// show that the image is runnable without a container runtime.
func TestBusyboxImageRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("no chroot binary")
	}
	img := busybox(t)
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode)&0o777); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(chroot, root, "/bin/sh", "-c", "echo hi; ls /bin | cat; true").CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "hi\n") || !strings.Contains(string(out), "sleep") {
		t.Fatalf("output %q", out)
	}
}

func TestIndexPlatforms(t *testing.T) {
	var children []v1.Image
	for i := range 4 {
		img, err := RandomImage(int64(i))
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, img)
	}
	idx, err := Index(children...)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("media type %s", mt)
	}
	if len(im.Manifests) != len(children) {
		t.Fatalf("%d manifests, want %d", len(im.Manifests), len(children))
	}
	seen := map[string]bool{}
	for i, d := range im.Manifests {
		if d.Digest != digestOf(t, children[i]) {
			t.Errorf("manifest %d: digest %s, want the child's %s", i, d.Digest, digestOf(t, children[i]))
		}
		if d.Platform == nil {
			t.Fatalf("manifest %d has no platform", i)
		}
		p := d.Platform.String()
		if seen[p] {
			t.Errorf("platform %s listed twice", p)
		}
		seen[p] = true
		isHost := d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH
		if isHost != (i == 0) {
			t.Errorf("manifest %d has platform %s; only the first may be the host's", i, p)
		}
	}
	if _, err := Index(); err == nil {
		t.Error("Index() with no children succeeded")
	}
	many := make([]v1.Image, len(platforms)+1)
	for i := range many {
		many[i] = children[0]
	}
	if _, err := Index(many...); err == nil {
		t.Error("Index with more children than platforms succeeded")
	}
}
