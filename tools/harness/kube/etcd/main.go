// Command etcd is the etcd server, built from the published go.etcd.io/etcd/server/v3 module.
// etcd's own main package lives in its root module, whose go.mod replaces its sub-modules with
// local folders a module dependency cannot see; this is the same two-line main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
