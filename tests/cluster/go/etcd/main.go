// etcd for the local test control plane: etcd's own entry point (etcdmain.Main, what the etcd binary
// runs), built from go.etcd.io/etcd/server/v3 through the Go module proxy at the version go.mod pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
