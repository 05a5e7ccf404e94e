// Command kubelet runs the upstream kubelet from the pinned k8s.io/kubernetes module (the sandbox's real node).
//
// It lives under node/ rather than cmd/ so that adding it does not change the control plane's cache key
// (build.sh hashes cmd/*/main.go); build-node.sh builds it.
package main

import (
	"context"
	"os"

	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
