//go:build tools

// Package tools pins the helm program the test bench builds.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
