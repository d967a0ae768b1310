#!/usr/bin/env bash
# Builds the Pulumi half of the e2e harness:
#   pulumi                       (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi, wrapper ./cli)
#       -> <tools>/pulumi-cli/bin/pulumi (the layout PulumiCommand(root=...) wants),
#          linked as <tools>/pulumi so it is on PATH with the other tools
#   pulumi-language-python       (sdk/v3 python/cmd/pulumi-language-python, wrapper ./language-python)
#       -> <tools>/pulumi-cli/bin/, next to the CLI, where the engine looks for bundled language
#          hosts; only `pulumi up` of a Pulumi.yaml project needs it. Optional: a failed build warns.
#   pulumi-resource-kubernetes   (github.com/pulumi/pulumi-kubernetes/provider/v4, wrapper ./kubernetes)
#       -> <pulumi-home>/plugins/resource-kubernetes-v<VERSION>/, so the engine never downloads it
# A tool is rebuilt only when its binary is missing or its stamp (pinned versions + flags + wrapper
# files) differs. Tools dir: $JUPYTERNETES_TOOLS, else ${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools;
# PULUMI_HOME: ${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/pulumi-home (as jupyternetes/harness/paths.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}
tools=${JUPYTERNETES_TOOLS:-$cache/tools}
pulumi_home=$cache/pulumi-home
mkdir -p "$tools" "$pulumi_home/plugins"

# The release the provider build is installed as; must equal the Python pulumi-kubernetes pin.
K8S_PLUGIN_VERSION=$(tr -d '[:space:]' <"$here/kubernetes/VERSION")

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
GO_P=${GO_P:-2}

log() { printf '[pulumi-build] %s\n' "$*" >&2; }

# required VERSION-OF MODULE GOMOD: the version a wrapper go.mod requires for MODULE.
required() {
	awk -v m="$1" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$2"
}

# fingerprint FILE...: content hash of wrapper files, so editing a pin rebuilds.
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

# up_to_date BINARY STAMPFILE STAMP: true when BINARY exists and was built with exactly STAMP.
up_to_date() {
	[[ -x "$1" && -f "$2" && "$(cat "$2")" == "$3" ]]
}

# ---- pulumi CLI -------------------------------------------------------------------------------
cli_mod=$here/cli/go.mod
PULUMI_VERSION=$(required github.com/pulumi/pulumi/pkg/v3 "$cli_mod")
sdk_version=$(required github.com/pulumi/pulumi/sdk/v3 "$cli_mod")
if [[ "$PULUMI_VERSION" != "$sdk_version" ]]; then
	log "error: $cli_mod pins pkg/v3 $PULUMI_VERSION but sdk/v3 $sdk_version; pin both to the same version"
	exit 1
fi
# The version ldflag is what `pulumi version` prints; the Automation API refuses a CLI without one.
cli_ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
cli_bin=$tools/pulumi-cli/bin/pulumi
cli_stamp="$PULUMI_VERSION $cli_ldflags $(fingerprint "$here/cli/go.mod" "$here/cli/go.sum")"
if ! up_to_date "$cli_bin" "$tools/.pulumi.stamp" "$cli_stamp"; then
	log "building pulumi $PULUMI_VERSION (cold: ~10 min on 2 cores)"
	start=$SECONDS
	mkdir -p "$(dirname "$cli_bin")"
	(cd "$here/cli" && go build -p "$GO_P" -trimpath -ldflags "$cli_ldflags" -o "$cli_bin.tmp" \
		github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
	mv -f "$cli_bin.tmp" "$cli_bin"
	echo "$cli_stamp" >"$tools/.pulumi.stamp"
	log "built pulumi $PULUMI_VERSION in $((SECONDS - start)) s"
else
	log "pulumi $PULUMI_VERSION up to date"
fi
ln -sfn pulumi-cli/bin/pulumi "$tools/pulumi"

# ---- pulumi-language-python (optional) ---------------------------------------------------------
lp_mod=$here/language-python/go.mod
LP_VERSION=$(required github.com/pulumi/pulumi/sdk/v3 "$lp_mod")
lp_ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LP_VERSION"
lp_bin=$tools/pulumi-cli/bin/pulumi-language-python
lp_stamp="$LP_VERSION $lp_ldflags $(fingerprint "$here/language-python/go.mod" "$here/language-python/go.sum")"
if ! up_to_date "$lp_bin" "$tools/.pulumi-language-python.stamp" "$lp_stamp"; then
	log "building pulumi-language-python $LP_VERSION (newest host the proxy serves; see language-python/go.mod)"
	start=$SECONDS
	if (
		cd "$here/language-python"
		go build -p "$GO_P" -trimpath -ldflags "$lp_ldflags" -o "$lp_bin.tmp" \
			github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
		# The host runs Python programs through this script, shipped beside it in releases.
		exec_script=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)/python/cmd/pulumi-language-python-exec
		install -m 0755 "$exec_script" "$(dirname "$lp_bin")/pulumi-language-python-exec"
	); then
		mv -f "$lp_bin.tmp" "$lp_bin"
		echo "$lp_stamp" >"$tools/.pulumi-language-python.stamp"
		log "built pulumi-language-python $LP_VERSION in $((SECONDS - start)) s"
	else
		rm -f "$lp_bin.tmp"
		log "warning: pulumi-language-python $LP_VERSION did not build; Pulumi.yaml projects with" \
			"runtime: python will not run (Automation API inline programs still do)"
	fi
else
	log "pulumi-language-python $LP_VERSION up to date"
fi

# ---- pulumi-resource-kubernetes ---------------------------------------------------------------
k8s_mod=$here/kubernetes/go.mod
provider_module_version=$(required github.com/pulumi/pulumi-kubernetes/provider/v4 "$k8s_mod")
plugin_dir=$pulumi_home/plugins/resource-kubernetes-v$K8S_PLUGIN_VERSION
plugin_bin=$plugin_dir/pulumi-resource-kubernetes
plugin_ldflags="-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PLUGIN_VERSION"
plugin_stamp="$K8S_PLUGIN_VERSION $provider_module_version $plugin_ldflags"
plugin_stamp+=" $(fingerprint "$here/kubernetes/go.mod" "$here/kubernetes/go.sum" "$here/kubernetes/main.go")"
if ! up_to_date "$plugin_bin" "$tools/.pulumi-resource-kubernetes.stamp" "$plugin_stamp"; then
	log "building pulumi-resource-kubernetes $K8S_PLUGIN_VERSION from provider/v4@$provider_module_version (cold: ~10 min on 2 cores)"
	start=$SECONDS
	# The module cache is read-only and embed files must sit next to main.go: build in a copy.
	work=$cache/build/pulumi-resource-kubernetes
	rm -rf "$work"
	mkdir -p "$work"
	cp "$here/kubernetes/go.mod" "$here/kubernetes/go.sum" "$here/kubernetes/main.go" "$work/"
	(
		cd "$work"
		go mod download github.com/pulumi/pulumi-kubernetes/provider/v4
		src=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
		cp "$src/schema.json" "$src/terraform-mapping.json" "$src/generate.go" .
		chmod u+w ./*
		# Upstream's own go:generate step: stamps the version into the schema, compacts both files.
		VERSION=$K8S_PLUGIN_VERSION go run -trimpath generate.go
		rm generate.go schema.json terraform-mapping.json
		go build -p "$GO_P" -trimpath -ldflags "$plugin_ldflags" -o pulumi-resource-kubernetes .
	)
	# Install atomically as `pulumi plugin install` would: the engine skips a dir with .partial.
	touch "$plugin_dir.partial"
	mkdir -p "$plugin_dir"
	mv -f "$work/pulumi-resource-kubernetes" "$plugin_bin"
	rm -f "$plugin_dir.partial"
	echo "$plugin_stamp" >"$tools/.pulumi-resource-kubernetes.stamp"
	log "built pulumi-resource-kubernetes $K8S_PLUGIN_VERSION in $((SECONDS - start)) s"
else
	log "pulumi-resource-kubernetes $K8S_PLUGIN_VERSION up to date"
fi
