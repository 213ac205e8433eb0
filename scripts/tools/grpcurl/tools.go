//go:build tools

// Package tools pins the grpcurl program the test bench builds.
package tools

import _ "github.com/fullstorydev/grpcurl/cmd/grpcurl"
