// CoreDNS with only the plugins a one-node cluster's DNS needs (the upstream build links ~60;
// this one answers cluster.local from the apiserver and forwards nothing: there is no upstream).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The execution order of the plugins above: the upstream order (core/dnsserver/zdirectives.go,
// generated from plugin.cfg) with the others left out.
func init() {
	dnsserver.Directives = []string{
		"reload", "bind", "ready", "health", "errors", "log", "loadbalance", "cache",
		"kubernetes", "loop",
	}
}

func main() {
	coremain.Run()
}
