// Command pulumi-resource-kubernetes is the Kubernetes resource provider plugin, built from the
// provider module for the test harness. The upstream main embeds two files that its go:generate
// step writes next to it (the module zip does not ship them); build.sh writes them here from the
// module's schema.json and terraform-mapping.json with the upstream generate.go before building.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
