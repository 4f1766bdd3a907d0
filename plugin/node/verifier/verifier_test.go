package verifier

import (
	"testing"

	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/source"
)

// The node's defaults are written out so that the daemon binary does not
// link the packages they come from; they must stay those packages'.
func TestNodeDefaultsAreTheSources(t *testing.T) {
	for _, c := range []struct{ name, node, src string }{
		{"hosts dir", node.DefaultHostsDir, source.DefaultHostsDir},
		{"bundle store", node.DefaultBundleStore, bundlestore.DefaultDir},
		{"registry timeout", node.DefaultRegistryTimeout.String(), source.DefaultTimeout.String()},
	} {
		if c.node != c.src {
			t.Errorf("%s: node says %s, the source %s", c.name, c.node, c.src)
		}
	}
}
