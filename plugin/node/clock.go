package node

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/tpm"
)

// clockMarkPurpose derives the clock mark's MAC key from the sealed key.
const clockMarkPurpose = "sealgate clock mark v1"

// clockMarkEvery is how often the highest clock seen is written down.
const clockMarkEvery = time.Minute

// checkClock says why the TPM's clock cannot measure verdict ages (empty
// when it can), and moves the mark up to it when it can. The highest clock
// seen is the mark's value and every loaded verdict's (both authenticated);
// a TPM clock behind it went back. Verdicts whose age cannot be established
// because the mark is gone are purged, not trusted.
func checkClock(dir string, key []byte, generation uint64, clk tpm.Clock, store *cache.Persistent) string {
	if why := clockUnusable(dir, key, generation, clk, store); why != "" {
		return why
	}
	if _, hasMark, _ := cache.ReadClockMark(dir, key, generation); !hasMark && store.Len() > 0 {
		// Verdicts without a mark (written by an older sealgate, or the
		// mark was removed): their clock cannot be checked.
		if err := store.Purge(); err != nil {
			return "verdicts without a clock mark could not be purged: " + err.Error()
		}
	}
	if err := cache.WriteClockMark(dir, key, generation, clk.Clock); err != nil {
		return err.Error()
	}
	return ""
}

// clockUnusable says why the TPM's clock cannot measure verdict ages, or
// "" when it can; it changes nothing.
func clockUnusable(dir string, key []byte, generation uint64, clk tpm.Clock, store *cache.Persistent) string {
	mark, _, err := cache.ReadClockMark(dir, key, generation)
	if err != nil && store.Len() > 0 {
		return fmt.Sprintf("%v: the highest TPM clock value seen is unknown (sealgate cache purge clears the verdicts and the mark)", err)
	}
	// With no verdict of this generation, a mark that does not
	// authenticate (the previous generation's, after a re-seal) vouches
	// for nothing: it is replaced.
	seen := mark
	for _, e := range store.Entries() {
		seen = max(seen, e.Verdict.Clock)
	}
	switch {
	case !clk.Safe:
		return "the TPM reports its clock may have lost time (Safe is false: it lost power without saving the clock)"
	case clk.Clock < seen:
		return fmt.Sprintf("the TPM clock (%s) is behind the highest value seen (%s): it went back (a TPM cleared or a TPM simulator restarted)", clk.Clock.Round(time.Second), seen.Round(time.Second))
	}
	return ""
}

// raiseClockMark writes clock as the mark if it is above the mark.
func raiseClockMark(dir string, key []byte, generation uint64, clock time.Duration, log *slog.Logger) {
	mark, _, err := cache.ReadClockMark(dir, key, generation)
	if err != nil || clock <= mark {
		return
	}
	if err := cache.WriteClockMark(dir, key, generation, clock); err != nil {
		log.Error("writing the TPM clock mark failed", "error", err)
	}
}
