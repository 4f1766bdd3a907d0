package daemon

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFile is this process's resident pages that map files, in KiB.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseStartupPages: the executable's read-only pages leave the
// resident set, the process runs on (its code comes back as it runs), and
// its writable data is untouched.
func TestReleaseStartupPages(t *testing.T) {
	marker := []byte("written data survives")
	before := rssFile(t)
	mapped, err := releaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if mapped <= 0 {
		t.Fatalf("released %d bytes: no read-only mapping of the executable found", mapped)
	}
	if after >= before {
		t.Errorf("resident file pages %d KiB before, %d KiB after the release", before, after)
	}
	if string(marker) != "written data survives" {
		t.Error("writable data changed")
	}
	t.Logf("mapped %d KiB; resident file pages %d KiB before, %d KiB after", mapped>>10, before, after)
}
