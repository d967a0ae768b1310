#!/usr/bin/env bash
# Builds the Kubernetes half of the e2e harness into the tools cache:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes, wrapper ./kubernetes)
#   kwok                                                     (sigs.k8s.io/kwok, wrapper ./kwok)
#   etcd                                                     (go.etcd.io/etcd/server/v3, wrapper ./etcd)
# A tool is rebuilt only when its binary is missing or its stamp (pinned version + flags) differs.
# Tools dir: $JUPYTERNETES_TOOLS, else ${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools
# (same rule as jupyternetes/harness/paths.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=${JUPYTERNETES_TOOLS:-${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools}
mkdir -p "$tools"

# The pinned versions live in one place: the require line of each wrapper go.mod.
pinned() { awk -v m="$2" '$1 == "require" && $2 == m { print $3 }' "$here/$1/go.mod"; }
KUBE_VERSION=$(pinned kubernetes k8s.io/kubernetes)
KWOK_VERSION=$(pinned kwok sigs.k8s.io/kwok)
ETCD_VERSION=$(pinned etcd go.etcd.io/etcd/server/v3)
for v in KUBE_VERSION KWOK_VERSION ETCD_VERSION; do
	[[ -n ${!v} ]] || { echo "[kube-build] cannot read $v: keep the single-line 'require <module> <version>' in its wrapper go.mod" >&2; exit 1; }
done
# Built with the machine's Go; 2 cores on CI, so keep parallelism modest.
# readonly: the committed go.mod/go.sum are complete; a build must never rewrite them.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
GO_P=${GO_P:-2}

log() { printf '[kube-build] %s\n' "$*" >&2; }

# up_to_date NAME STAMP: true when the binary exists and was built with exactly STAMP.
up_to_date() {
	[[ -x "$tools/$1" && -f "$tools/.$1.stamp" && "$(cat "$tools/.$1.stamp")" == "$2" ]]
}

# ---- kube-apiserver, kube-controller-manager, kube-scheduler --------------------------------
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler)
# shellcheck source=ldflags.sh
source "$here/ldflags.sh"
kube_ldflags=$(kube_ldflags "$KUBE_VERSION")
kube_stamp="$KUBE_VERSION $kube_ldflags"
missing=()
for b in "${kube_bins[@]}"; do up_to_date "$b" "$kube_stamp" || missing+=("$b"); done
if ((${#missing[@]})); then
	log "building ${missing[*]} $KUBE_VERSION (cold: ~15-25 min on 2 cores)"
	start=$SECONDS
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	# One go invocation so the shared packages are compiled once.
	(cd "$here/kubernetes" && go build -p "$GO_P" -trimpath -ldflags "$kube_ldflags" -o "$tools/" "${pkgs[@]}")
	for b in "${missing[@]}"; do echo "$kube_stamp" >"$tools/.$b.stamp"; done
	log "built ${missing[*]} in $((SECONDS - start)) s"
else
	log "kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION up to date"
fi

# ---- kwok (simulated nodes: pods get scheduled, an IP and Running without a kubelet) -----------
kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
kwok_stamp="$KWOK_VERSION $kwok_ldflags"
if ! up_to_date kwok "$kwok_stamp"; then
	log "building kwok $KWOK_VERSION"
	start=$SECONDS
	(cd "$here/kwok" && go build -p "$GO_P" -trimpath -ldflags "$kwok_ldflags" -o "$tools/kwok" sigs.k8s.io/kwok/cmd/kwok)
	echo "$kwok_stamp" >"$tools/.kwok.stamp"
	log "built kwok in $((SECONDS - start)) s"
else
	log "kwok $KWOK_VERSION up to date"
fi
# kwok refuses to start without Stage objects; kwokctl ships these defaults in the module's
# kustomize/ folder (not compiled in), so concatenate them into one config file next to kwok.
if [[ ! -f "$tools/kwok-stages.yaml" || "$(head -1 "$tools/kwok-stages.yaml")" != "# kwok $KWOK_VERSION" ]]; then
	kwok_src=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
	{
		echo "# kwok $KWOK_VERSION"
		for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			echo "---"
			cat "$kwok_src/kustomize/stage/$f"
		done
	} >"$tools/kwok-stages.yaml.tmp"
	mv "$tools/kwok-stages.yaml.tmp" "$tools/kwok-stages.yaml"
	log "wrote $tools/kwok-stages.yaml"
fi

# ---- etcd (the apiserver's datastore; same release as the etcd client k8s.io/apiserver uses) -----
etcd_ldflags="-s -w"
etcd_stamp="$ETCD_VERSION $etcd_ldflags"
if ! up_to_date etcd "$etcd_stamp"; then
	log "building etcd $ETCD_VERSION"
	start=$SECONDS
	rm -f "$tools/etcd" # an older harness linked Debian's etcd here
	(cd "$here/etcd" && go build -p "$GO_P" -trimpath -ldflags "$etcd_ldflags" -o "$tools/etcd" .)
	echo "$etcd_stamp" >"$tools/.etcd.stamp"
	log "built etcd in $((SECONDS - start)) s"
else
	log "etcd $ETCD_VERSION up to date"
fi
