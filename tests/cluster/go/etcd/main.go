// Command etcd is the upstream etcd server, built from the Go module proxy for Suyun's test
// control plane and status store (tests/cluster/up).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
