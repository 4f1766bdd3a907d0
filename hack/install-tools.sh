#!/usr/bin/env bash
# install-tools.sh installs what sealgate's integration tests run against:
# runc, busybox-static, swtpm and swtpm-tools from Debian's packages, and
# containerd, its runc shim, ctr, crictl and cosign built from source through
# the Go module proxy into <repo>/.tools/bin, at pinned versions.
#
# It is idempotent: a Debian package already installed is not reinstalled, and
# a Go tool whose stamp file (.tools/stamps/<tool>) records the same module
# version and build flags is not rebuilt. Run it as root on Debian 12 (apt is
# skipped when not root and every package is already there).
#
# Environment:
#   TOOLS_DIR    where to install (default: <repo>/.tools)
#   SKIP_APT=1   do not touch Debian's packages
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TOOLS_DIR:-$repo_root/.tools}"
bin_dir="$tools_dir/bin"
stamp_dir="$tools_dir/stamps"

log() { printf 'install-tools: %s\n' "$*"; }
die() { printf 'install-tools: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Debian packages.
# runc runs the containers, busybox-static is packed into the runnable test
# image, swtpm/swtpm-tools are the software TPM, ca-certificates/git/make are
# what `go install` and `make` need. gcc and libc6-dev let containerd build
# with cgo (as upstream ships it). systemd brings systemd-analyze, which checks
# the unit files. tpm2-tools brings tpm2_checkquote, the standard tool a fleet
# checks sealgate's quotes with (the attestation tests run it).
# conmon is CRI-O's container monitor (the CRI-O tests build CRI-O itself).
apt_packages=(runc busybox-static swtpm swtpm-tools tpm2-tools conmon ca-certificates git make gcc libc6-dev systemd)

install_apt() {
	if [[ "${SKIP_APT:-0}" == 1 ]]; then
		log "SKIP_APT=1: not checking Debian packages"
		return
	fi
	local missing=() p
	for p in "${apt_packages[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if ((${#missing[@]} == 0)); then
		log "Debian packages present: ${apt_packages[*]}"
		return
	fi
	[[ "$(id -u)" == 0 ]] || die "missing Debian packages (${missing[*]}); run as root or install them"
	command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
	log "apt-get update"
	DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
	log "apt-get install -y ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# ---------------------------------------------------------------------------
# Go tools, pinned. Each line: binary name, module package@version, and the
# environment/flags it is built with (part of the stamp, so a change rebuilds).
containerd_version=v2.4.2
crictl_version=v1.34.0
cosign_version=v2.6.5

go_tools=(
	# name                    package@version                                                         env               flags
	"containerd|github.com/containerd/containerd/v2/cmd/containerd@$containerd_version|CGO_ENABLED=1|-tags=no_btrfs"
	"containerd-shim-runc-v2|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version|CGO_ENABLED=0|"
	"ctr|github.com/containerd/containerd/v2/cmd/ctr@$containerd_version|CGO_ENABLED=0|"
	"crictl|sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version|CGO_ENABLED=0|"
	"cosign|github.com/sigstore/cosign/v2/cmd/cosign@$cosign_version|CGO_ENABLED=0|"
)

install_go_tools() {
	command -v go >/dev/null || die "go is not on PATH"
	mkdir -p "$bin_dir" "$stamp_dir"
	log "go: $(go version) (GOTOOLCHAIN=$(go env GOTOOLCHAIN))"
	local line name pkg envs flags want have
	for line in "${go_tools[@]}"; do
		IFS='|' read -r name pkg envs flags <<<"$line"
		want="$pkg $envs $flags"
		have=""
		[[ -f "$stamp_dir/$name" ]] && have="$(cat "$stamp_dir/$name")"
		if [[ -x "$bin_dir/$name" && "$have" == "$want" ]]; then
			log "$name: up to date ($pkg)"
			continue
		fi
		log "$name: $envs go install -trimpath${flags:+ $flags} $pkg"
		rm -f "$stamp_dir/$name"
		# -trimpath keeps the binaries independent of where the module cache is.
		# shellcheck disable=SC2086 # envs and flags are single words or empty
		env GOBIN="$bin_dir" GOFLAGS=-buildvcs=false $envs \
			go install -trimpath $flags "$pkg" </dev/null
		printf '%s' "$want" >"$stamp_dir/$name"
	done
}

# CRI-O and its pinns helper, from CRI-O's module through hack/crio (a small
# module carrying CRI-O's go.sum: the proxy lists no versions of CRI-O, so
# `go install pkg@version` cannot build it). pinns is C, built from the same
# module's pinns/src.
crio_version=v1.34.0
crio_tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

install_crio() {
	local here want have src
	here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
	want="crio $crio_version $crio_tags $(sha256sum "$here/crio/go.mod" "$here/crio/go.sum" | sha256sum | cut -c1-16)"
	have=""
	[[ -f "$stamp_dir/crio" ]] && have="$(cat "$stamp_dir/crio")"
	if [[ -x "$bin_dir/crio" && -x "$bin_dir/pinns" && "$have" == "$want" ]]; then
		log "crio, pinns: up to date (CRI-O $crio_version)"
		return
	fi
	rm -f "$stamp_dir/crio"
	log "crio: go build github.com/cri-o/cri-o/cmd/crio ($crio_version, from hack/crio)"
	(cd "$here/crio" && env GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=1 \
		go build -trimpath -tags "$crio_tags" -o "$bin_dir/crio" github.com/cri-o/cri-o/cmd/crio </dev/null)
	src="$(cd "$here/crio" && go list -m -f '{{.Dir}}' github.com/cri-o/cri-o)"
	[[ -d "$src/pinns/src" ]] || die "no pinns sources in $src"
	log "pinns: gcc -static $src/pinns/src/*.c"
	gcc -std=c99 -O3 -Wall -Wextra -static -o "$bin_dir/pinns" "$src"/pinns/src/*.c
	printf '%s' "$want" >"$stamp_dir/crio"
}

install_apt
install_go_tools
install_crio

# Say where everything is, so a failing test run can be matched to versions.
for t in runc busybox swtpm tpm2_checkquote conmon crio pinns; do
	p="$(command -v "$t" || true)"
	log "$t: ${p:-NOT FOUND}"
done
[[ -x /bin/busybox ]] || die "/bin/busybox missing (Debian busybox-static)"
log "done: add $bin_dir to PATH (make does this for its targets)"
