//go:build unix

package cache

import (
	"errors"
	"os"
	"syscall"
)

// openNoFollow opens path for reading without following a symbolic link in
// its last element and without blocking on a FIFO: the snapshot's name is
// in a directory an attacker may have written to.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}

// lockDir takes an exclusive advisory lock on the open directory, so that
// two writers (a daemon and a `cache purge`, or two daemons) do not
// overwrite each other's snapshots. The lock goes with the descriptor.
func lockDir(d *os.File) error {
	err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}
