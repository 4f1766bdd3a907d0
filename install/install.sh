#!/bin/sh
# Installs sealgate on a containerd 2.x node: the binaries (sealgate and the
# runtime gate sealgate-runc), the systemd unit, containerd's drop-in (NRI
# with required_plugins = ["sealgate"], and runc run through sealgate-runc)
# and the trust store directory.
#
#   sudo install/install.sh [--bin FILE] [--gate-bin FILE] [--policy FILE] [--prefix DIR]
#                           [--destdir DIR] [--no-start] [--restart-containerd]
#
#   --bin FILE             the sealgate binary (default: <repo>/bin/sealgate, `make build`)
#   --gate-bin FILE        the runtime gate (default: <repo>/bin/sealgate-runc, `make build`)
#   --policy FILE          install FILE as /etc/sealgate/policy.yaml (an existing
#                          policy is kept otherwise)
#   --prefix DIR           binary goes to DIR/bin (default /usr/local)
#   --destdir DIR          stage into DIR (OS image builds): no systemctl, no checks
#                          of the running system
#   --no-start             install only; do not enable or start sealgate
#   --restart-containerd   once sealgate runs, restart containerd so that the
#                          drop-in takes effect (running containers keep running)
#
# Order matters: the drop-in makes containerd refuse every container while
# sealgate is not running, so it is written only once sealgate runs and
# answers the runtime gate, and containerd is restarted (by this script or
# by you) only after that. Containers that already run keep running.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin="$repo/bin/sealgate"
gate_bin="$repo/bin/sealgate-runc"
policy=""
prefix=/usr/local
destdir=""
start=1
restart_containerd=0

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--bin) bin=${2:?--bin needs a file}; shift 2 ;;
	--gate-bin) gate_bin=${2:?--gate-bin needs a file}; shift 2 ;;
	--policy) policy=${2:?--policy needs a file}; shift 2 ;;
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
	--no-start) start=0; shift ;;
	--restart-containerd) restart_containerd=1; shift ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

[ -x "$bin" ] || die "$bin is not an executable; run 'make build' or pass --bin"
[ -x "$gate_bin" ] || die "$gate_bin is not an executable; run 'make build' or pass --gate-bin"
[ -z "$policy" ] || [ -f "$policy" ] || die "policy $policy does not exist"
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
	die "run as root (or stage with --destdir)"
fi

D=$destdir
etc="$D/etc/sealgate"
unit="$D/etc/systemd/system/sealgate.service"
dropin="$D/etc/containerd/conf.d/sealgate.toml"
ctrd_config="$D/etc/containerd/config.toml"

# Replaced atomically: a shim may run sealgate-runc at any moment.
for pair in "$bin:sealgate" "$gate_bin:sealgate-runc"; do
	src=${pair%:*}
	dst="$D$prefix/bin/${pair##*:}"
	say "binary -> $dst"
	install -d -m 0755 "$D$prefix/bin"
	install -m 0755 "$src" "$dst.new"
	mv -f "$dst.new" "$dst"
done

say "trust store -> $etc (policy, keys/), verdict cache -> $D/var/lib/sealgate"
install -d -m 0755 "$etc" "$etc/keys"
install -d -m 0700 "$D/var/lib/sealgate"
install -m 0644 "$here/policy.example.yaml" "$etc/policy.example.yaml"
if [ -n "$policy" ]; then
	install -m 0644 "$policy" "$etc/policy.yaml"
	say "policy $policy -> $etc/policy.yaml"
fi

say "systemd unit -> $unit"
install -d -m 0755 "$(dirname "$unit")"
sed "s#/usr/local/bin/sealgate#$prefix/bin/sealgate#" "$here/../systemd/sealgate.service" >"$unit.new"
chmod 0644 "$unit.new"
mv -f "$unit.new" "$unit"

# write_dropin installs containerd's drop-in, naming the runtime gate where
# it was installed.
write_dropin() {
	say "containerd drop-in -> $dropin (NRI requires sealgate; runc runs through $prefix/bin/sealgate-runc)"
	install -d -m 0755 "$(dirname "$dropin")"
	sed "s#/usr/local/bin/sealgate-runc#$prefix/bin/sealgate-runc#" "$here/containerd/sealgate.toml" >"$dropin.new"
	chmod 0644 "$dropin.new"
	mv -f "$dropin.new" "$dropin"
}

# containerd reads conf.d only when its main config imports it.
imports_ok=0
if [ ! -e "$ctrd_config" ] && [ -n "$destdir" ]; then
	say "note: the image's /etc/containerd/config.toml must import /etc/containerd/conf.d/*.toml"
elif [ ! -e "$ctrd_config" ]; then
	say "no $ctrd_config: writing a minimal one that imports conf.d (all else default)"
	printf "# Written by sealgate's install.sh: containerd's defaults plus the drop-ins.\nversion = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n" >"$ctrd_config"
	imports_ok=1
elif grep -Eq "^[[:space:]]*imports[[:space:]]*=.*/etc/containerd/conf\.d/" "$ctrd_config"; then
	imports_ok=1
else
	echo "install: WARNING: $ctrd_config does not import /etc/containerd/conf.d/*.toml," >&2
	echo "install: so containerd will not read the drop-in. Add this top-level line to it:" >&2
	echo "install:     imports = ['/etc/containerd/conf.d/*.toml']" >&2
fi

if [ -n "$destdir" ]; then
	write_dropin
	say "staged into $destdir; enable sealgate.service in the image"
	exit 0
fi

command -v systemctl >/dev/null 2>&1 || die "no systemctl: start '$prefix/bin/sealgate run' with your init system"
systemctl daemon-reload
if [ "$start" -eq 0 ]; then
	say "installed; not started (--no-start)"
	exit 0
fi
if [ ! -f "$etc/policy.yaml" ]; then
	say "installed, but not started: there is no $etc/policy.yaml yet."
	say "write one (see $etc/policy.example.yaml), then: systemctl enable --now sealgate"
	say "and only after that restart containerd, which then refuses containers while sealgate is down."
	exit 0
fi

systemctl enable sealgate.service
systemctl restart sealgate.service
# Up means: the service is active and the runtime gate's socket answers
# (sealgate opened its trust store and listens).
up=0
for _ in $(seq 1 30); do
	if systemctl is-active --quiet sealgate.service && [ -S /run/sealgate/gate.sock ]; then
		up=1
		break
	fi
	sleep 1
done
if [ "$up" -ne 1 ]; then
	journalctl -u sealgate.service -n 20 --no-pager >&2 || true
	die "sealgate did not come up (see the log above); the containerd drop-in was NOT installed"
fi
say "sealgate is running and answers the runtime gate"
write_dropin

if [ "$restart_containerd" -eq 1 ]; then
	[ "$imports_ok" -eq 1 ] || die "not restarting containerd: its config does not import the drop-in (see above)"
	say "restarting containerd to load the drop-in (running containers keep running)"
	systemctl restart containerd.service
	if "$prefix/bin/sealgate" doctor --wait 30s; then
		say "both gates are in place: no unverified container is created, with sealgate up or down"
	else
		echo "install: WARNING: sealgate doctor found a problem (see above)" >&2
	fi
else
	say "restart containerd to load the drop-in: systemctl restart containerd; then check: sealgate doctor"
fi
