package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sealgate/sealgate/plugin/policy"
)

// The sealed set is the policy and exactly the files it names (keys,
// trusted roots): what decides, and nothing else. Other files in the trust
// store (an editor's swap file, notes, a README) are neither sealed nor
// read, so they can neither stop the daemon nor slip into a decision.

// readSet reads the policy and the files it names, bounded, and returns
// them sorted by path with the policy parsed from those very bytes. A file
// named outside the trust store, a symbolic link, a special file or an
// invalid policy is an error wrapping ErrStore (an invalid policy also
// wraps policy.ErrInvalid).
func readSet(dir string) ([]File, *policy.Policy, error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s does not exist; write a starter trust store with `sealgate trust init %s`", ErrStore, dir, dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open trust store: %w", err)
	}
	defer root.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open trust store: %w", err)
	}
	pf, err := readStoreFile(root, PolicyName, maxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s has no %s; write one (sealgate trust init writes a starter policy)", ErrStore, dir, PolicyName)
	}
	if err != nil {
		return nil, nil, err
	}
	files := []File{pf}
	var refused error
	read := func(path string, limit int64) ([]byte, error) {
		rel, err := filepath.Rel(abs, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			refused = fmt.Errorf("%w: the policy names %s, outside the trust store %s, so its content would not be sealed; move it into %s (keys/ or roots/) and name it relative to the policy", ErrStore, path, dir, dir)
			return nil, refused
		}
		rel = filepath.ToSlash(rel)
		if i := slices.IndexFunc(files, func(f File) bool { return f.Path == rel }); i >= 0 {
			return files[i].data, nil
		}
		f, err := readStoreFile(root, rel, min(limit, maxFileSize))
		if errors.Is(err, ErrStore) {
			refused = err
		}
		if err != nil {
			return nil, err
		}
		if len(files) == maxFiles {
			refused = fmt.Errorf("%w: the policy names more than %d files", ErrStore, maxFiles-1)
			return nil, refused
		}
		files = append(files, f)
		return f.data, nil
	}
	pol, err := policy.Parse(filepath.Join(dir, PolicyName), pf.data, policy.WithFileReader(read))
	switch {
	case refused != nil:
		return nil, nil, refused
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	if total > maxTotalSize {
		return nil, nil, fmt.Errorf("%w: the policy and the files it names add up to more than %d bytes", ErrStore, maxTotalSize)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, pol, nil
}

// readListed reads the files a seal record lists, as they are on disk now.
// A listed file that is gone is left out (diff reports it removed); a link
// or a special file in its place is an error wrapping ErrStore.
func readListed(dir string, listed []File) ([]File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open trust store: %w", err)
	}
	defer root.Close()
	var (
		files []File
		total int64
	)
	for _, l := range listed {
		f, err := readStoreFile(root, l.Path, maxFileSize)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if total += f.Size; total > maxTotalSize {
			return nil, fmt.Errorf("%w: the sealed files add up to more than %d bytes", ErrStore, maxTotalSize)
		}
		files = append(files, f)
	}
	return files, nil
}

// readStoreFile reads one file of the trust store by its slash path,
// bounded. No component of the path may be a symbolic link (a link could
// point outside what is sealed, or at something that changes under it) and
// the file must be regular: a FIFO is refused before it is opened. The
// os.Root keeps a file swapped for a link after the check inside the
// folder.
func readStoreFile(root *os.Root, p string, limit int64) (File, error) {
	if !validPath(p) {
		return File{}, fmt.Errorf("%w: %.80q: a name longer than %d bytes, with control characters or not UTF-8; rename it", ErrStore, p, maxPathLen)
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		st, err := root.Lstat(sub)
		if err != nil {
			return File{}, fmt.Errorf("read %s: %w", p, err)
		}
		switch t := st.Mode().Type(); {
		case t&fs.ModeSymlink != 0:
			return File{}, fmt.Errorf("%w: %s is a symbolic link; the trust store holds regular files only (a link could point outside what is sealed): replace it with the file it points to", ErrStore, sub)
		case i < len(parts)-1 && !st.IsDir():
			return File{}, fmt.Errorf("read %s: %s is not a folder: %w", p, sub, fs.ErrNotExist)
		case i == len(parts)-1 && !t.IsRegular():
			return File{}, fmt.Errorf("%w: %s is not a regular file (%s); the trust store holds regular files only", ErrStore, p, t.Type())
		}
	}
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("%w: %s is not a regular file", ErrStore, p)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return File{}, fmt.Errorf("%w: %s is larger than %d bytes; a trust store holds a policy, keys and trusted roots", ErrStore, p, limit)
	}
	sum := sha256.Sum256(data)
	return File{Path: p, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), data: data}, nil
}
