#!/usr/bin/env bash
# Installs the hub harness's proxy into the tools cache: configurable-http-proxy, pinned by the
# committed package.json + package-lock.json beside this script (`npm ci`, so exactly the locked
# tree; nothing is downloaded at run time). Needs node >= 20 and npm (Debian's are fine).
# Result: $tools/configurable-http-proxy (a symlink into $tools/chp/node_modules/.bin).
# Reinstalled only when the lock file or node's major version changed (the stamp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=${JUPYTERNETES_TOOLS:-${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools}
mkdir -p "$tools"

log() { printf '[hub-build] %s\n' "$*" >&2; }

for cmd in node npm; do
	command -v "$cmd" >/dev/null || { log "$cmd not found: install Node.js >= 20 with npm (Debian: apt-get install nodejs npm)"; exit 1; }
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || { log "node $(node --version) is too old: configurable-http-proxy 5.2.0 needs node >= 20"; exit 1; }

prefix="$tools/chp"
stamp="node$node_major $(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [[ -x "$tools/configurable-http-proxy" && -f "$tools/.configurable-http-proxy.stamp" \
	&& "$(cat "$tools/.configurable-http-proxy.stamp")" == "$stamp" ]]; then
	log "configurable-http-proxy up to date"
	exit 0
fi
log "installing configurable-http-proxy (npm ci) into $prefix"
start=$SECONDS
rm -rf "$prefix.tmp"
mkdir -p "$prefix.tmp"
cp "$here/package.json" "$here/package-lock.json" "$prefix.tmp/"
(cd "$prefix.tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
ln -sfn "chp/node_modules/.bin/configurable-http-proxy" "$tools/configurable-http-proxy"
"$tools/configurable-http-proxy" --version >/dev/null
echo "$stamp" >"$tools/.configurable-http-proxy.stamp"
log "installed configurable-http-proxy $("$tools/configurable-http-proxy" --version) in $((SECONDS - start)) s"
