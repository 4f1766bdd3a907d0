package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
	"github.com/sealgate/sealgate/plugin/source"
)

const bundleLong = `export, on a machine that reaches the registry, writes the images' signatures,
attestations, Sigstore bundles and manifests to one file; import loads such a
file, or the directory ` + "`cosign save --dir`" + ` writes, into the node's local
bundle store. Imported material grants nothing by itself: it is verified like
any other.`

const bundleExportLong = `Writes the signatures, attestations, Sigstore bundles and manifests of each
IMAGE@DIGEST to one file, every repository's own (two repositories holding
one digest keep both). An image without any signature material fails the
export unless --allow-empty.`

const bundleImportLong = `Loads FILE (what sealgate bundle export wrote) or DIR (what
cosign save --dir DIR IMAGE wrote) into the node's local bundle store, which
the daemon asks before the registry.`

func bundleExport(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	var out string
	fs.StringVarP(&out, "out", "o", "", "file to write (\"-\" for standard output)")
	deprecatedAlias(fs, "output", "out", &out, stderr)
	hostsDir := fs.String("registry-hosts-dir", source.DefaultHostsDir, "containerd's registry host configuration (certs.d/<host>/hosts.toml): mirrors, plain-HTTP hosts, CAs")
	timeout := fs.Duration("registry-timeout", source.DefaultTimeout, "timeout of one registry request")
	allowEmpty := fs.Bool("allow-empty", false, "export images that have no signature material (their manifests only) instead of failing")
	creds := fs.String("registry-credentials", node.DefaultRegistryCredentials, "registry credentials in docker's config.json format, read when the file exists")
	authFile := fs.String("registry-auth-file", "", "registry credentials in containers-auth.json format (podman's auth.json, CRI-O's global_auth_file), read when the file exists")
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) == 0 {
			fmt.Fprintln(stderr, "sealgate bundle export: give at least one IMAGE@DIGEST")
			return exitUsage
		}
		if out == "" {
			fmt.Fprintln(stderr, "sealgate bundle export: give the file to write with -o FILE")
			return exitUsage
		}
		images := make([]name.Digest, 0, len(pos))
		for _, p := range pos {
			if !strings.Contains(p, "@") {
				fmt.Fprintf(stderr, "sealgate bundle export: %s has no digest; give IMAGE@sha256:... (a tag is never trusted)\n", p)
				return exitUsage
			}
			d, err := name.NewDigest(p)
			if err != nil {
				fmt.Fprintf(stderr, "sealgate bundle export: %s: %v\n", p, err)
				return exitUsage
			}
			images = append(images, d)
		}
		// The registry source exactly as the node builds it, so that what is
		// exported is what the node would fetch.
		reg, err := verifier.NewRegistry(node.Config{HostsDir: *hostsDir, RegistryTimeout: *timeout, RegistryCredentials: *creds, RegistryAuthFile: *authFile})
		if err != nil {
			fmt.Fprintf(stderr, "sealgate bundle export: %v\n", err)
			return exitUsage
		}

		report := stdout
		if out == "-" {
			report = stderr
			sums, err := bundlestore.Export(ctx, reg, images, stdout, exportOpts(*allowEmpty)...)
			if err != nil {
				fmt.Fprintf(stderr, "sealgate bundle export: %v\n", err)
				return exitFailed
			}
			printSummaries(report, "exported", sums)
			return exitOK
		}
		sums, err := exportToFile(ctx, reg, images, out, exportOpts(*allowEmpty)...)
		if err != nil {
			fmt.Fprintf(stderr, "sealgate bundle export: %v\n", err)
			return exitFailed
		}
		printSummaries(report, "exported", sums)
		fmt.Fprintf(report, "wrote %s; load it on the node with: sealgate bundle import %s\n", out, filepath.Base(out))
		return exitOK
	}
}

// exportToFile writes the export beside out and renames it into place, so
// that a failed export leaves no half-written file to be carried to a node.
// exportOpts are the export options the flags ask for.
func exportOpts(allowEmpty bool) []bundlestore.ExportOption {
	if allowEmpty {
		return []bundlestore.ExportOption{bundlestore.WithAllowEmpty()}
	}
	return nil
}

func exportToFile(ctx context.Context, src source.Source, images []name.Digest, out string, opts ...bundlestore.ExportOption) ([]bundlestore.ImageSummary, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	sums, err := bundlestore.Export(ctx, src, images, tmp, opts...)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return nil, err
	}
	return sums, nil
}

func bundleImport(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	store := fs.String("bundle-store", bundlestore.DefaultDir, "the node's local bundle store")
	deprecatedAlias(fs, "store", "bundle-store", store, stderr)
	maxSize := fs.Int64("max-size", bundlestore.DefaultArchiveBytes, "largest export file (or cosign layout content) to read, in bytes")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "sealgate bundle import: give exactly one FILE or DIR")
			return exitUsage
		}
		local, err := bundlestore.New(*store, bundlestore.WithArchiveBytes(*maxSize))
		if err != nil {
			fmt.Fprintf(stderr, "sealgate bundle import: %v\n", err)
			return exitUsage
		}
		start := time.Now()
		sums, err := local.Import(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "sealgate bundle import: %v\n", err)
			if errors.Is(err, source.ErrLimit) {
				fmt.Fprintln(stderr, "sealgate bundle import: raise --max-size only for a file you expect to be that large")
			}
			return exitFailed
		}
		printSummaries(stdout, "imported", sums)
		fmt.Fprintf(stdout, "local bundle store %s updated in %s; the material is verified against the trust store when an image is decided\n",
			local.Dir(), time.Since(start).Round(time.Millisecond))
		return exitOK
	}
}

func printSummaries(w io.Writer, verb string, sums []bundlestore.ImageSummary) {
	for _, s := range sums {
		manifest := "no manifest"
		if s.Manifest {
			manifest = "manifest"
		}
		fmt.Fprintf(w, "%s %s: %s, %s, %s, %s\n", verb, s.Ref,
			plural(s.Signatures, "signature"), plural(s.Attestations, "attestation"), plural(s.Bundles, "bundle"), manifest)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
