package retry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running when
// they end: the bufconn servers and clients of the examples and of the
// server, dial and logging tests must all be stopped and closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
