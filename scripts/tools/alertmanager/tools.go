//go:build tools

// Package tools pins the Alertmanager the test bench builds: the metrics pipeline's
// notification tests post alerts to a real one over its v2 API and read them back.
package tools

import (
	_ "github.com/prometheus/alertmanager/cmd/alertmanager"
)
