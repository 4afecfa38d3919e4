// Package integration_test holds the end-to-end tests of the retry
// interceptors: a real gRPC client and server over bufconn, the server a
// scriptable stub (stubserver_test.go).
package integration_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
