#!/bin/sh
# Removes what install.sh installed.
#
#   sudo install/uninstall.sh [--prefix DIR] [--destdir DIR] [--purge]
#                             [--no-restart-containerd]
#
#   --prefix DIR              where the binary was installed (default /usr/local)
#   --destdir DIR             remove from a staged tree instead of this system
#   --purge                   also remove /etc/sealgate (policy, keys) and
#                             /var/lib/sealgate (verdict cache)
#   --no-restart-containerd   do not restart containerd after removing the drop-in
#
# Order matters: the drop-in makes containerd refuse every container while
# sealgate is not running (NRI's required_plugins, and the runtime gate
# sealgate-runc). So the drop-in goes first and containerd is
# restarted without it (running containers keep running); only then is
# sealgate stopped. With --no-restart-containerd, restart containerd
# yourself before stopping sealgate, or no new container will start.
set -eu

prefix=/usr/local
destdir=""
purge=0
restart_containerd=1

die() { echo "uninstall: $*" >&2; exit 1; }
say() { echo "uninstall: $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
	--purge) purge=1; shift ;;
	--no-restart-containerd) restart_containerd=0; shift ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
	die "run as root (or use --destdir)"
fi

D=$destdir
live=0
if [ -z "$destdir" ] && command -v systemctl >/dev/null 2>&1; then
	live=1
fi

dropin="$D/etc/containerd/conf.d/sealgate.toml"
if [ -e "$dropin" ]; then
	rm -f "$dropin"
	say "removed $dropin"
	if [ "$live" -eq 1 ] && systemctl is-active --quiet containerd.service; then
		if [ "$restart_containerd" -eq 1 ]; then
			say "restarting containerd without the drop-in (running containers keep running)"
			systemctl restart containerd.service
		else
			echo "uninstall: containerd still requires sealgate until it restarts;" >&2
			echo "uninstall: sealgate is left running: restart containerd, then run this again." >&2
			exit 1
		fi
	fi
fi

# CRI-O: the hook first (it refuses every container sealgate does not
# answer for; CRI-O reads its hooks folder live), then the drop-in.
crio_hook="$D/etc/containers/oci/hooks.d/sealgate.json"
crio_dropin="$D/etc/crio/crio.conf.d/10-sealgate.conf"
for f in "$crio_hook" "$crio_dropin"; do
	if [ -e "$f" ]; then
		rm -f "$f"
		say "removed $f"
	fi
done

if [ "$live" -eq 1 ]; then
	systemctl disable --now sealgate.service 2>/dev/null || true
	systemctl disable sealgate-firstboot.service 2>/dev/null || true
	say "sealgate stopped and disabled"
fi
rm -f "$D/etc/systemd/system/sealgate.service" "$D/etc/systemd/system/sealgate-firstboot.service" "$D$prefix/bin/sealgate" "$D$prefix/bin/sealgate-daemon"
rm -rf "$D$prefix/share/sealgate" "$D$prefix/lib/sealgate"
rm -f "$D$prefix"/share/man/man1/sealgate.1 "$D$prefix"/share/man/man1/sealgate-*.1 "$D$prefix/share/bash-completion/completions/sealgate" \
	"$D$prefix/share/zsh/vendor-completions/_sealgate" "$D$prefix/share/fish/vendor_completions.d/sealgate.fish"
say "removed the units, $D$prefix/bin/sealgate and $D$prefix/share/sealgate"
# The shims of containers created through the runtime gate keep running
# sealgate-runc to stop and delete them: leave the real runc in its place.
gate="$D$prefix/bin/sealgate-runc"
if [ -e "$gate" ] || [ -L "$gate" ]; then
	runc_path=$(command -v runc || true)
	if [ -n "$runc_path" ] && [ -z "$destdir" ]; then
		ln -sfn "$runc_path" "$gate.new" && mv -f "$gate.new" "$gate"
		say "$gate now points at $runc_path, for containers created through the runtime gate; remove it once they are gone (after a reboot)"
	else
		rm -f "$gate"
		say "removed $gate"
	fi
fi
if [ "$live" -eq 1 ]; then
	systemctl daemon-reload
fi

if [ "$purge" -eq 1 ]; then
	rm -rf "$D/etc/sealgate" "$D/var/lib/sealgate"
	say "removed $D/etc/sealgate and $D/var/lib/sealgate"
else
	say "kept $D/etc/sealgate (trust store) and $D/var/lib/sealgate; --purge removes them"
fi
