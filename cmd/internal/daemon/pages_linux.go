package daemon

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// releaseStartupPages drops the pages of this process's own executable
// that are mapped read-only (its code and constant data) from its page
// tables, and returns how many bytes were mapped. Start-up touches nearly
// every package's code once (initialisation, the trust store's check,
// the first connection); after it the daemon runs a small part of it, so
// the pages only start-up used stop counting in its resident set. A page
// still in use comes back at its next touch from the page cache, where
// they all stay until the kernel needs the memory: nothing is lost or
// written, those mappings are never written to.
func releaseStartupPages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var released int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.ContainsAny(fields[1], "ws") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno != 0 {
			return released, errno
		}
		released += int64(end - start)
	}
	return released, sc.Err()
}
