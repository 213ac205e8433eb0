//go:build tools

// Package tools pins the Prometheus server and promtool the test bench builds: the reconciler's
// baseline test backfills a known series with promtool and queries it through the real server.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
