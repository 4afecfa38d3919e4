package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the benchmarks: each one
// starts a server and a client over bufconn, and both must be gone once
// its cleanup has run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
