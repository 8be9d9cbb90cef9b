// Command kube-controller-manager is the upstream controller manager. The test control plane
// runs only the controllers a kubelet-less cluster needs to behave like a real one (garbage
// collection of owned objects, namespace deletion, service account tokens); it does not run
// the Job controller: tests play the migration runner by patching Job status.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
