# Sourced by kube/build.sh and node/build.sh: the linker flags of every binary built from the
# k8s.io/kubernetes pin. One copy, so the control plane and the node report the same version and
# their shared packages are compiled once (Go's build cache keys on the flags).
# kube_ldflags VERSION: prints the flags.
kube_ldflags() {
	local version=$1 minor flags="-s -w" pkg
	minor=${version#v1.}
	minor=${minor%%.*}
	# component-base drives /version and the binary's compatibility version; client-go's copy is
	# what clients built into the binaries report. pulumi-kubernetes refuses a cluster at v0.0.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	printf '%s' "$flags"
}
