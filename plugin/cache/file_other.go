//go:build !unix

package cache

import "os"

// openNoFollow opens path for reading. Without O_NOFOLLOW, the regular-file
// check after opening is the only defence.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

// lockDir does nothing where flock does not exist: one writer per
// directory is then up to the operator.
func lockDir(*os.File) error { return nil }
