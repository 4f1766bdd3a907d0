package decision

import (
	"sync"

	"github.com/sealgate/sealgate/plugin/policy"
)

// maxParsedRefs bounds the parsed references an engine keeps: a node runs
// far fewer distinct image names; past it the map starts over.
const maxParsedRefs = 1024

// maxRememberedDenials bounds the remembered denials.
const maxRememberedDenials = 4096

// refCache keeps image references parsed, so that the hot path does not
// parse the same name (go-containerregistry's name package allocates)
// for every container. Only references that parse are kept.
type refCache struct {
	mu sync.RWMutex
	m  map[string]policy.Image
}

func (c *refCache) parse(s string) (policy.Image, error) {
	c.mu.RLock()
	img, ok := c.m[s]
	c.mu.RUnlock()
	if ok {
		return img, nil
	}
	img, err := policy.ParseImage(s)
	if err != nil {
		return img, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxParsedRefs {
		c.m = make(map[string]policy.Image, 64)
	}
	c.m[s] = img
	c.mu.Unlock()
	return img, nil
}
