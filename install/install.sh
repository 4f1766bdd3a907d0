#!/bin/sh
# Installs sealgate on a containerd 2.x node in one command: the binaries
# (sealgate, the daemon binary sealgate-daemon that `sealgate run` becomes,
# and the runtime gate sealgate-runc), the systemd unit, the trust
# store (initialised when there is none, the operator's policy, keys and
# trusted roots added, checked and sealed to the TPM), then starts sealgate,
# waits until it answers, and only then writes containerd's drop-in (NRI
# with required_plugins = ["sealgate"], and runc run through sealgate-runc)
# and restarts containerd.
#
#   sudo install/install.sh [--runtime containerd|crio] [--policy FILE] [--key FILE]...
#                           [--trusted-root FILE]... [--tpm SPEC] [--bin FILE] [--gate-bin FILE]
#                           [--daemon-bin FILE]
#                           [--prefix DIR] [--destdir DIR] [--no-start] [--no-restart-containerd]
#
#   --runtime RUNTIME      containerd (default) or crio. On CRI-O, the drop-in is
#                          /etc/crio/crio.conf.d/10-sealgate.conf (NRI on, the OCI
#                          hooks folders) and the runtime gate is an OCI createRuntime
#                          hook, /etc/containers/oci/hooks.d/sealgate.json, run before
#                          every container by any OCI runtime; CRI-O is restarted
#                          (--no-restart-containerd leaves that to you too)
#   --policy FILE          install FILE as /etc/sealgate/policy.yaml (without it an
#                          existing policy is kept, or the starter policy written)
#   --key FILE             add a public key (PEM) to /etc/sealgate/keys/; the
#                          policy names it as keys/NAME (repeatable)
#   --trusted-root FILE    add a Sigstore trusted_root.json to /etc/sealgate/roots/
#                          (repeatable)
#   --tpm SPEC             the TPM to seal to and run with (default /dev/tpmrm0;
#                          swtpm:HOST:PORT for a software TPM)
#   --bin FILE             the sealgate binary (default: <repo>/bin/sealgate, `make build`)
#   --gate-bin FILE        the runtime gate (default: <repo>/bin/sealgate-runc, `make build`)
#   --daemon-bin FILE      the daemon binary (default: sealgate-daemon beside --bin, `make build`)
#   --prefix DIR           binaries go to DIR/bin, examples to DIR/share/sealgate
#                          (default /usr/local)
#   --destdir DIR          stage into DIR (OS image builds): no systemctl, and no
#                          seal unless --tpm is given; sealgate-firstboot.service
#                          seals on the node's first boot, before sealgate starts
#   --no-start             install and seal only; do not start sealgate or touch containerd
#   --no-restart-containerd  write the drop-in but leave restarting containerd to you
#
# Idempotent: run again to upgrade. The operator's policy, keys and roots are
# kept, and so is the seal when they are unchanged (sealgate trust status).
# Order matters: the drop-in makes containerd refuse every container while
# sealgate is not running, so it is written only once sealgate runs on a
# sealed trust store and answers, and containerd is restarted only after
# that. Containers that already run keep running. See install/README.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin="$repo/bin/sealgate"
gate_bin="$repo/bin/sealgate-runc"
daemon_bin=""
policy=""
keys=""
roots=""
tpm=""
prefix=/usr/local
destdir=""
start=1
restart_containerd=1
runtime=containerd

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--runtime) runtime=${2:?--runtime needs containerd or crio}; shift 2 ;;
	--bin) bin=${2:?--bin needs a file}; shift 2 ;;
	--gate-bin) gate_bin=${2:?--gate-bin needs a file}; shift 2 ;;
	--daemon-bin) daemon_bin=${2:?--daemon-bin needs a file}; shift 2 ;;
	--policy) policy=${2:?--policy needs a file}; shift 2 ;;
	--key) [ -f "${2:?--key needs a file}" ] || die "key $2 does not exist"; keys="$keys
$2"; shift 2 ;;
	--trusted-root) [ -f "${2:?--trusted-root needs a file}" ] || die "trusted root $2 does not exist"; roots="$roots
$2"; shift 2 ;;
	--tpm) tpm=${2:?--tpm needs a TPM (/dev/tpmrm0 or swtpm:HOST:PORT)}; shift 2 ;;
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
	--no-start) start=0; shift ;;
	--restart-containerd) restart_containerd=1; shift ;;
	--no-restart-containerd) restart_containerd=0; shift ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

case "$runtime" in
containerd | crio) ;;
*) die "--runtime $runtime: want containerd or crio" ;;
esac
[ -x "$bin" ] || die "$bin is not an executable; run 'make build' or pass --bin"
[ -x "$gate_bin" ] || die "$gate_bin is not an executable; run 'make build' or pass --gate-bin"
[ -n "$daemon_bin" ] || daemon_bin="$(dirname "$bin")/sealgate-daemon"
[ -x "$daemon_bin" ] || die "$daemon_bin is not an executable; run 'make build' or pass --daemon-bin"
[ -z "$policy" ] || [ -f "$policy" ] || die "policy $policy does not exist"
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
	die "run as root (or stage with --destdir)"
fi

D=$destdir
etc="$D/etc/sealgate"
unit="$D/etc/systemd/system/sealgate.service"
dropin="$D/etc/containerd/conf.d/sealgate.toml"
crio_dropin="$D/etc/crio/crio.conf.d/10-sealgate.conf"
crio_hook="$D/etc/containers/oci/hooks.d/sealgate.json"
ctrd_config="$D/etc/containerd/config.toml"

# Replaced atomically: a shim may run sealgate-runc at any moment.
# The daemon binary first: sealgate run executes the one beside it.
for pair in "$daemon_bin:sealgate-daemon" "$bin:sealgate" "$gate_bin:sealgate-runc"; do
	src=${pair%:*}
	dst="$D$prefix/bin/${pair##*:}"
	say "binary -> $dst"
	install -d -m 0755 "$D$prefix/bin"
	install -m 0755 "$src" "$dst.new"
	mv -f "$dst.new" "$dst"
done

# containerd's image verifier runs what is in this folder before each pull.
verifier_dir="$D$prefix/lib/sealgate/image-verifier"
install -d -m 0755 "$verifier_dir"
ln -sfn "$prefix/bin/sealgate" "$verifier_dir/sealgate"
say "image verifier -> $verifier_dir/sealgate (a link to $prefix/bin/sealgate)"

# Man pages and shell completion, generated by the binary from the same
# command definitions that give its --help.
sg="$D$prefix/bin/sealgate"
if "$sg" version >/dev/null 2>&1; then
	"$sg" man --dir "$D$prefix/share/man/man1" >/dev/null || die "could not write the man pages"
	install -d -m 0755 "$D$prefix/share/bash-completion/completions" "$D$prefix/share/zsh/vendor-completions" "$D$prefix/share/fish/vendor_completions.d"
	"$sg" completion bash >"$D$prefix/share/bash-completion/completions/sealgate"
	"$sg" completion zsh >"$D$prefix/share/zsh/vendor-completions/_sealgate"
	"$sg" completion fish >"$D$prefix/share/fish/vendor_completions.d/sealgate.fish"
	say "man pages -> $D$prefix/share/man/man1/sealgate*.1, shell completion for bash, zsh and fish"
else
	say "man pages and completion skipped: $sg does not run on this machine (cross-built); run 'sealgate man --dir DIR' and 'sealgate completion SHELL' on the target"
fi

# Examples and docs live outside the trust store: only the policy and what
# it names are sealed, and an upgrade that changes an example touches no seal.
share="$D$prefix/share/sealgate"
say "examples -> $share"
install -d -m 0755 "$share"
install -m 0644 "$here/policy.example.yaml" "$share/policy.example.yaml"
if [ -f "$etc/policy.example.yaml" ] && cmp -s "$etc/policy.example.yaml" "$here/policy.example.yaml"; then
	rm -f "$etc/policy.example.yaml" # an older install.sh put it in the trust store
fi

# The trust store: initialised when there is none, the operator's files
# added. Existing files are kept.
install -d -m 0700 "$D/var/lib/sealgate"
if [ ! -f "$etc/policy.yaml" ]; then
	if [ ! -d "$etc" ] || [ -z "$(ls -A "$etc" 2>/dev/null)" ]; then
		"$bin" trust init "$etc" >/dev/null || die "sealgate trust init $etc failed"
		say "trust store initialised at $etc (starter policy: warn mode, default deny, the pause image allowed)"
	elif [ -z "$policy" ]; then
		die "$etc exists but has no policy.yaml; pass --policy FILE (see $share/policy.example.yaml)"
	fi
fi
install -d -m 0755 "$etc" "$etc/keys" "$etc/roots"
if [ -n "$policy" ]; then
	install -m 0644 "$policy" "$etc/policy.yaml.new"
	mv -f "$etc/policy.yaml.new" "$etc/policy.yaml"
	say "policy $policy -> $etc/policy.yaml"
fi
printf '%s\n' "$keys" | while IFS= read -r k; do
	[ -n "$k" ] || continue
	install -m 0644 "$k" "$etc/keys/$(basename "$k")"
	say "key $k -> $etc/keys/$(basename "$k")"
	grep -q "keys/$(basename "$k")" "$etc/policy.yaml" ||
		echo "install: WARNING: the policy does not name keys/$(basename "$k"): it is neither sealed nor used" >&2
done
printf '%s\n' "$roots" | while IFS= read -r r; do
	[ -n "$r" ] || continue
	install -m 0644 "$r" "$etc/roots/$(basename "$r")"
	say "trusted root $r -> $etc/roots/$(basename "$r")"
done

say "systemd unit -> $unit"
install -d -m 0755 "$(dirname "$unit")"
tpm_arg=""
[ -z "$tpm" ] || tpm_arg=" --tpm $tpm"
unit_runtime="s#containerd.service#containerd.service#"
[ "$runtime" = crio ] && unit_runtime="s#containerd.service#crio.service#g; s#(containerd NRI plugin)#(CRI-O NRI plugin)#; s#--registry-hosts-dir /etc/containerd/certs.d#--registries-conf /etc/containers/registries.conf#"
sed -e "s#/usr/local/bin/sealgate#$prefix/bin/sealgate#" -e "s#--trust-dir /etc/sealgate#--trust-dir /etc/sealgate$tpm_arg#" -e "$unit_runtime" \
	"$here/../systemd/sealgate.service" >"$unit.new"
chmod 0644 "$unit.new"
mv -f "$unit.new" "$unit"
firstboot="$D/etc/systemd/system/sealgate-firstboot.service"
sed -e "s#/usr/local/bin/sealgate#$prefix/bin/sealgate#" -e "s#--trust-dir /etc/sealgate#--trust-dir /etc/sealgate$tpm_arg#" \
	"$here/../systemd/sealgate-firstboot.service" >"$firstboot.new"
chmod 0644 "$firstboot.new"
mv -f "$firstboot.new" "$firstboot"

# seal checks the policy and seals the trust store to the TPM, unless the
# seal in place still matches (an upgrade keeps it).
seal() {
	if "$bin" trust status --trust-dir "$etc" ${tpm:+--tpm "$tpm"} >/dev/null 2>&1; then
		say "the trust store's seal matches its files: kept"
		return 0
	fi
	"$bin" trust seal --trust-dir "$etc" ${tpm:+--tpm "$tpm"} "$@" ||
		die "sealing $etc failed (see above); nothing was started and containerd was not touched"
}

# write_dropin installs containerd's drop-in, naming the runtime gate where
# it was installed.
write_dropin() {
	say "containerd drop-in -> $dropin (NRI requires sealgate; runc runs through $prefix/bin/sealgate-runc)"
	install -d -m 0755 "$(dirname "$dropin")"
	sed -e "s#/usr/local/bin/sealgate-runc#$prefix/bin/sealgate-runc#" -e "s#/usr/local/lib/sealgate#$prefix/lib/sealgate#" \
		"$here/containerd/sealgate.toml" >"$dropin.new"
	chmod 0644 "$dropin.new"
	mv -f "$dropin.new" "$dropin"
}

# write_crio installs CRI-O's drop-in and the runtime gate as an OCI hook.
write_crio() {
	say "CRI-O drop-in -> $crio_dropin (NRI on, OCI hooks folders)"
	install -d -m 0755 "$(dirname "$crio_dropin")" "$(dirname "$crio_hook")"
	install -m 0644 "$here/crio/10-sealgate.conf" "$crio_dropin.new"
	mv -f "$crio_dropin.new" "$crio_dropin"
	say "runtime gate as an OCI createRuntime hook -> $crio_hook ($prefix/bin/sealgate-runc hook)"
	sed -e "s#/usr/local/bin/sealgate-runc#$prefix/bin/sealgate-runc#" "$here/crio/sealgate.json" >"$crio_hook.new"
	chmod 0644 "$crio_hook.new"
	mv -f "$crio_hook.new" "$crio_hook"
}

if [ "$runtime" = crio ]; then
	if [ -n "$destdir" ]; then
		if [ -n "$tpm" ]; then
			seal --gate-socket ""
		else
			say "not sealed (no --tpm): sealgate-firstboot.service seals on the node's first boot, before sealgate starts"
		fi
		write_crio
		say "staged into $destdir; enable sealgate-firstboot.service and sealgate.service in the image"
		exit 0
	fi
	command -v systemctl >/dev/null 2>&1 || die "no systemctl: start '$prefix/bin/sealgate run' with your init system"
	systemctl daemon-reload
	seal
	[ "$start" -eq 1 ] || { say "installed and sealed; not started (--no-start)"; exit 0; }
	systemctl enable sealgate.service
	if systemctl is-active --quiet sealgate.service; then systemctl reload-or-restart sealgate.service; else systemctl start sealgate.service; fi
	"$prefix/bin/sealgate" doctor --ready --wait 30s ||
		{ journalctl -u sealgate.service -n 20 --no-pager >&2 || true; die "sealgate did not come up (see the log above); CRI-O's drop-in and hook were NOT installed"; }
	say "sealgate is running and answers the runtime gate"
	write_crio
	if [ "$restart_containerd" -eq 1 ]; then
		say "restarting CRI-O to load the drop-in (running containers keep running)"
		systemctl restart crio.service
	else
		say "restart CRI-O to load the drop-in: systemctl restart crio"
	fi
	exit 0
fi

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
	if [ -n "$tpm" ]; then
		seal --gate-socket ""
	else
		say "not sealed (no --tpm): sealgate-firstboot.service seals on the node's first boot, before sealgate starts"
	fi
	write_dropin
	say "staged into $destdir; enable sealgate-firstboot.service and sealgate.service in the image"
	exit 0
fi

command -v systemctl >/dev/null 2>&1 || die "no systemctl: start '$prefix/bin/sealgate run' with your init system"
systemctl daemon-reload
seal
if [ "$start" -eq 0 ]; then
	say "installed and sealed; not started (--no-start)"
	exit 0
fi

systemctl enable sealgate.service
if systemctl is-active --quiet sealgate.service; then
	systemctl reload-or-restart sealgate.service
else
	systemctl start sealgate.service
fi
# Up means: the service is active and the runtime gate answers (sealgate
# opened its sealed trust store and listens).
up=0
if "$prefix/bin/sealgate" doctor --ready --wait 30s; then
	up=1
fi
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
	if "$prefix/bin/sealgate" doctor --wait 30s ${tpm:+--tpm "$tpm"}; then
		say "both gates are in place: no unverified container is created, with sealgate up or down"
	else
		echo "install: WARNING: sealgate doctor found a problem (see above)" >&2
	fi
else
	say "restart containerd to load the drop-in: systemctl restart containerd; then check: sealgate doctor"
fi
