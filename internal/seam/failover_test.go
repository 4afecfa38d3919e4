package seam

import (
	"testing"
	"time"
)

// Without package retry linked in, no breaker or fallback chain can be made.
func TestFailoverUnregistered(t *testing.T) {
	c := Config{Now: time.Now, Rand: func() float64 { return 0 }}
	if _, err := NewBreaker(struct{}{}, c); err == nil {
		t.Error("NewBreaker without package retry: no error")
	}
	if _, err := NewFailover(struct{}{}, c); err == nil {
		t.Error("NewFailover without package retry: no error")
	}
}
