// Command nullplugin is an NRI plugin that allows every container and does
// nothing else: the floor the NRI protocol itself costs, which the load
// driver (hack/loaddriver) measures sealgate against.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type null struct{}

// CreateContainer allows the container.
func (null) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, nil
}

func main() {
	socket := flag.String("nri-socket", "/var/run/nri/nri.sock", "the runtime's NRI socket")
	name := flag.String("plugin-name", "null", "name to register under")
	idx := flag.String("plugin-idx", "10", "plugin index")
	flag.Parse()
	s, err := stub.New(null{}, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nullplugin: %v\n", err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "nullplugin: %v\n", err)
		os.Exit(1)
	}
}
