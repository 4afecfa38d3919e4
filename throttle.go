package retry

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Throttle is gRFC A6 retry throttling, as grpc-go's retryThrottling service
// config: a token bucket of MaxTokens that starts full; every retryable
// failure (and every pushback saying "do not retry") takes one token, every
// successful call gives back TokenRatio, and retries are allowed only while
// the bucket holds more than half of MaxTokens. It charges first attempts
// too, so it stops all retries while failures exceed about
// TokenRatio/(1+TokenRatio) of the calls (9% for A6's example of 10 tokens
// and 0.1): a replica lost with 300 calls in flight gets 4 of its 150
// failures retried (see the README's budget tables), where CreditBudget
// retries them all.
type Throttle struct {
	maxTokens, tokenRatio float64
	err                   error

	maxMilli, ratioMilli int64
	tokens               atomic.Int64
}

// NewThrottle returns A6 retry throttling with maxTokens (0 < maxTokens ≤
// 1000) and tokenRatio (0 < tokenRatio ≤ maxTokens), e.g. NewThrottle(10,
// 0.1). Invalid arguments are reported by Policy.Validate.
func NewThrottle(maxTokens, tokenRatio float64) *Throttle {
	t := &Throttle{maxTokens: maxTokens, tokenRatio: tokenRatio}
	switch {
	case !(maxTokens > 0 && maxTokens <= 1000):
		t.err = fmt.Errorf("NewThrottle maxTokens %v: must be in (0, 1000]", maxTokens)
	case !(tokenRatio > 0 && tokenRatio <= maxTokens):
		t.err = fmt.Errorf("NewThrottle tokenRatio %v: must be in (0, maxTokens]", tokenRatio)
	}
	if t.err != nil {
		return t
	}
	t.maxMilli = int64(math.Round(maxTokens * milli))
	t.ratioMilli = int64(math.Round(tokenRatio * milli))
	t.tokens.Store(t.maxMilli)
	return t
}

func (t *Throttle) validate() error { return t.err }

// String describes the throttle by its arguments (as in the error of
// Policy.Validate).
func (t *Throttle) String() string {
	return fmt.Sprintf("NewThrottle(%v, %v)", t.maxTokens, t.tokenRatio)
}

// failed takes a token for a failure, as grpc-go does: a call that had
// committed is not counted; a failure for want of a connection is (unlike
// CreditBudget), as grpc-go counts every failure with a retryable code.
func (t *Throttle) failed(_ time.Time, f attemptFailure) {
	if !f.committed {
		t.add(-milli)
	}
}

func (t *Throttle) success() { t.add(t.ratioMilli) }

func (t *Throttle) add(d int64) {
	for {
		old := t.tokens.Load()
		v := min(max(old+d, 0), t.maxMilli)
		if v == old || t.tokens.CompareAndSwap(old, v) {
			return
		}
	}
}

func (t *Throttle) tryRetry(time.Time) bool { return t.tokens.Load()*2 > t.maxMilli }

// Tokens returns the tokens in the bucket. For tests and metrics.
func (t *Throttle) Tokens() float64 { return float64(t.tokens.Load()) / milli }
