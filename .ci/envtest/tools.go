//go:build tools

// Package envtest pins the Kubernetes control-plane binaries that the test suite builds:
// .ci/tools runs `go build` on each import below, with the versions in go.mod.
package envtest

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
