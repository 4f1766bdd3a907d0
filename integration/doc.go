// Package integration holds sealgate's end-to-end tests against the real
// components of a node: containerd 2.x with runc, crictl, a registry on
// 127.0.0.1, the cosign CLI and the sealgate binary itself. They need root
// and the tools `make tools` installs, and run only with the build tag:
//
//	go test -tags integration ./integration/...
//
// Each test starts its own registry and containerd in a short temporary
// directory and removes everything when it ends. The `make demo` program is
// in integration/demo.
package integration
