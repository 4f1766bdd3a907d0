package trust

import (
	"testing"

	"github.com/sealgate/sealgate/tpm"
	"github.com/sealgate/sealgate/tpm/tpmsim"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// realBackends are the TPMs besides the fake: the in-process simulator and
// Debian's swtpm over its socket (skipped when swtpm is not installed,
// failing under SEALGATE_REQUIRE_TOOLS=1).
func realBackends() []backend {
	return []backend{
		{"simulator", func(t *testing.T) *node {
			sim, err := tpmsim.New()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := sim.Close(); err != nil {
					t.Errorf("close simulator: %v", err)
				}
			})
			openSim := func(t *testing.T) tpm.TPM {
				tp, err := tpm.Wrap(sim.Transport())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tp.Close() })
				return tp
			}
			n := &node{tpm: openSim(t)}
			n.restart = func(t *testing.T, reboot bool) {
				if err := n.tpm.Close(); err != nil {
					t.Fatal(err)
				}
				if reboot {
					if err := sim.Reboot(); err != nil {
						t.Fatal(err)
					}
				}
				n.tpm = openSim(t)
			}
			return n
		}},
		{"swtpm", func(t *testing.T) *node {
			sw := tpmtest.StartSwtpm(t)
			openSw := func(t *testing.T) tpm.TPM {
				tp, err := tpm.Open(sw.Spec)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tp.Close() })
				return tp
			}
			n := &node{tpm: openSw(t)}
			n.restart = func(t *testing.T, reboot bool) {
				if err := n.tpm.Close(); err != nil {
					t.Fatal(err)
				}
				if reboot {
					sw.Restart(t)
				}
				n.tpm = openSw(t)
			}
			return n
		}},
	}
}
