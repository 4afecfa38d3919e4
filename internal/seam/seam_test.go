package seam

import (
	"testing"
	"time"
)

// Without package retry linked in, nothing is registered.
func TestUnregistered(t *testing.T) {
	_, err := NewDecider(struct{}{}, Config{Now: time.Now, Rand: func() float64 { return 0 }})
	if err == nil {
		t.Error("NewDecider without package retry: no error")
	}
}
