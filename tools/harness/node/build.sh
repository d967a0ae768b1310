#!/usr/bin/env bash
# Builds the real node of the e2e harness (harness/node.py) into the tools cache:
#   kubelet, kube-proxy          (k8s.io/kubernetes: the control plane's wrapper ../kube/kubernetes,
#                                 so the same pin, module download and compiled packages)
#   containerd, ctr, containerd-shim-runc-v2
#                                (github.com/containerd/containerd/v2, wrapper ./containerd)
#   coredns                      (github.com/coredns/coredns, wrapper ./coredns: its main.go links
#                                 only the plugins a cluster's DNS needs)
#   pause.oci.tar                (the sandbox image: build/pause/linux/pause.c of the same
#                                 k8s.io/kubernetes module, gcc -Os -static, as an OCI archive)
# and installs what Debian packages well when missing: runc, containernetworking-plugins (bridge,
# host-local, loopback, portmap in /usr/lib/cni), iptables (kube-proxy's mode and the bridge's
# firewall), gcc + libc6-dev (the static pause binary).
# A tool is rebuilt only when its binary is missing or its stamp (pinned version + flags + wrapper
# files) differs. Tools dir as in ../kube/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kube_wrapper=$here/../kube/kubernetes
tools=${JUPYTERNETES_TOOLS:-${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools}
mkdir -p "$tools"

# The pinned versions live in one place: the require line of each wrapper go.mod.
pinned() { awk -v m="$2" '$1 == "require" && $2 == m { print $3 }' "$1/go.mod"; }
KUBE_VERSION=$(pinned "$kube_wrapper" k8s.io/kubernetes)
CONTAINERD_VERSION=$(pinned "$here/containerd" github.com/containerd/containerd/v2)
COREDNS_VERSION=$(pinned "$here/coredns" github.com/coredns/coredns)
for v in KUBE_VERSION CONTAINERD_VERSION COREDNS_VERSION; do
	[[ -n ${!v} ]] || { echo "[node-build] cannot read $v: keep the single-line 'require <module> <version>' in its wrapper go.mod" >&2; exit 1; }
done
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
GO_P=${GO_P:-2}

log() { printf '[node-build] %s\n' "$*" >&2; }
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }
up_to_date() {
	[[ -e "$tools/$1" && -f "$tools/.$1.stamp" && "$(cat "$tools/.$1.stamp")" == "$2" ]]
}

# ---- Debian packages ------------------------------------------------------------------------
# command -> package; installed only when the command is missing (CI starts from a clean machine).
declare -A debs=([runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
	[iptables]=iptables [gcc]=gcc [/usr/include/stdio.h]=libc6-dev)
want=()
for cmd in "${!debs[@]}"; do
	if [[ $cmd == /* ]]; then [[ -e $cmd ]] || want+=("${debs[$cmd]}")
	else command -v "$cmd" >/dev/null || want+=("${debs[$cmd]}"); fi
done
if ((${#want[@]})); then
	log "installing Debian packages: ${want[*]}"
	start=$SECONDS
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get install -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends "${want[@]}" >/dev/null ||
		{ "${sudo[@]}" apt-get update -o DPkg::Lock::Timeout=600 -q >/dev/null && "${sudo[@]}" apt-get install -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends "${want[@]}" >/dev/null; }
	log "installed ${want[*]} in $((SECONDS - start)) s"
fi

# ---- kubelet, kube-proxy ----------------------------------------------------------------------
# shellcheck source=../kube/ldflags.sh
source "$here/../kube/ldflags.sh"
kube_flags=$(kube_ldflags "$KUBE_VERSION")
kube_stamp="$KUBE_VERSION $kube_flags"
missing=()
for b in kubelet kube-proxy; do up_to_date "$b" "$kube_stamp" || missing+=("$b"); done
if ((${#missing[@]})); then
	log "building ${missing[*]} $KUBE_VERSION"
	start=$SECONDS
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	(cd "$kube_wrapper" && go build -p "$GO_P" -trimpath -ldflags "$kube_flags" -o "$tools/" "${pkgs[@]}")
	for b in "${missing[@]}"; do echo "$kube_stamp" >"$tools/.$b.stamp"; done
	log "built ${missing[*]} in $((SECONDS - start)) s"
else
	log "kubelet, kube-proxy $KUBE_VERSION up to date"
fi

# ---- containerd, ctr, containerd-shim-runc-v2 -----------------------------------------------
# The tags leave out the snapshotters this node never uses (btrfs, devmapper, zfs need cgo or
# their tools) and the CLI's man-page generator.
ctd_tags="urfave_cli_no_docs no_btrfs no_devmapper no_zfs"
ctd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
ctd_ldflags+=" -X github.com/containerd/containerd/v2/version.Revision=$CONTAINERD_VERSION"
ctd_stamp="$CONTAINERD_VERSION $ctd_tags $ctd_ldflags $(fingerprint "$here/containerd/go.mod" "$here/containerd/go.sum")"
ctd_bins=(containerd ctr containerd-shim-runc-v2)
missing=()
for b in "${ctd_bins[@]}"; do up_to_date "$b" "$ctd_stamp" || missing+=("$b"); done
if ((${#missing[@]})); then
	log "building ${missing[*]} $CONTAINERD_VERSION"
	start=$SECONDS
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b"); done
	(cd "$here/containerd" && go build -p "$GO_P" -trimpath -tags "$ctd_tags" -ldflags "$ctd_ldflags" -o "$tools/" "${pkgs[@]}")
	for b in "${missing[@]}"; do echo "$ctd_stamp" >"$tools/.$b.stamp"; done
	log "built ${missing[*]} in $((SECONDS - start)) s"
else
	log "containerd $CONTAINERD_VERSION up to date"
fi

# ---- coredns ------------------------------------------------------------------------------------
dns_ldflags="-s -w"
dns_stamp="$COREDNS_VERSION $dns_ldflags $(fingerprint "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go")"
if ! up_to_date coredns "$dns_stamp"; then
	log "building coredns $COREDNS_VERSION (trimmed plugin set)"
	start=$SECONDS
	(cd "$here/coredns" && go build -p "$GO_P" -trimpath -ldflags "$dns_ldflags" -o "$tools/coredns" .)
	echo "$dns_stamp" >"$tools/.coredns.stamp"
	log "built coredns in $((SECONDS - start)) s"
else
	log "coredns $COREDNS_VERSION up to date"
fi

# ---- the pause image (the pod sandbox; no registry to pull registry.k8s.io/pause from) --------
kube_src=$(cd "$kube_wrapper" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
PAUSE_TAG=$(awk '$1 == "TAG" && $2 == "?=" { print $3 }' "$kube_src/build/pause/Makefile")
# The name harness/node.py gives containerd as its sandbox image (keep the two in step).
pause_image=jupyternetes.local/pause:$PAUSE_TAG
pause_cflags="-Os -Wall -Werror -static -DVERSION=v$PAUSE_TAG-jupyternetes"
pause_stamp="$KUBE_VERSION $pause_image $pause_cflags"
if ! up_to_date pause.oci.tar "$pause_stamp"; then
	log "building $pause_image"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
	# shellcheck disable=SC2086
	gcc $pause_cflags -o "$work/rootfs/pause" "$kube_src/build/pause/linux/pause.c"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" -C "$work/rootfs" pause
	# blob FILE: stores FILE under its digest, prints "sha256:<hex> <size>".
	blob() {
		local d s
		d=$(sha256sum "$1" | cut -d' ' -f1)
		s=$(stat -c %s "$1")
		cp "$1" "$work/oci/blobs/sha256/$d"
		echo "sha256:$d $s"
	}
	read -r layer_digest layer_size < <(blob "$work/layer.tar")
	printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
		"$layer_digest" >"$work/config.json"
	read -r config_digest config_size < <(blob "$work/config.json")
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
		"$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
	read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest_digest" "$manifest_size" "$pause_image" "$PAUSE_TAG" >"$work/oci/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tools/pause.oci.tar.tmp" -C "$work/oci" .
	mv -f "$tools/pause.oci.tar.tmp" "$tools/pause.oci.tar"
	echo "$pause_image" >"$tools/pause.image"
	echo "$pause_stamp" >"$tools/.pause.oci.tar.stamp"
	log "built $pause_image"
else
	log "$pause_image up to date"
fi
