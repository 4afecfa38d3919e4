package retry

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRatioBudgetArithmetic(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewRatioBudget(0.1, 0) // no allowance: deposits only
	for i := 0; i < 5; i++ {
		if !b.tryRetry(t0) {
			t.Fatalf("retry %d of the 5 a new budget holds denied", i+1)
		}
	}
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatal("an empty budget without allowance allowed a retry")
	}
	for i := 0; i < 100; i++ {
		b.failed(t0, true, false) // failures deposit nothing: an outage drains the budget
	}
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatalf("calls or failures deposited: balance %v", b.Balance())
	}
	for i := 0; i < 9; i++ {
		b.success()
	}
	if b.tryRetry(t0) {
		t.Fatal("9 successes at 10% bought a retry")
	}
	b.success()
	if math.Abs(b.Balance()-1) > 1e-9 || !b.tryRetry(t0) || b.Balance() != 0 {
		t.Fatalf("10 successes at 10%% must buy exactly one retry (balance %v)", b.Balance())
	}
	for i := 0; i < 1000; i++ {
		b.success()
	}
	if b.Balance() != 5 {
		t.Fatalf("balance %v, want capped at 5 retries", b.Balance())
	}
}

func TestRatioBudgetAllowance(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewRatioBudget(0.1, 2) // 2 retries a second, burst of one second's worth
	b.balance.Store(0)
	// tries asks for a retry at each offset from t0, in turn.
	tries := func(ats ...time.Duration) []bool {
		var got []bool
		for _, at := range ats {
			got = append(got, b.tryRetry(t0.Add(at)))
		}
		return got
	}
	const ms = time.Millisecond
	if got := tries(0, 0, 0, 499*ms, 500*ms, 500*ms); !slices.Equal(got, []bool{true, true, false, false, true, false}) {
		t.Fatalf("allowance of 2/s from idle: %v; want 2 retries at once, then one exactly 500ms later", got)
	}
	// The balance pays first and leaves the allowance alone: they add up.
	b = NewRatioBudget(0.1, 1)
	b.balance.Store(milli)
	const s = time.Second
	if got := tries(10*s, 10*s, 10*s, 10500*ms, 11*s); !slices.Equal(got, []bool{true, true, false, false, true}) {
		t.Fatalf("%v; want the balance's retry and the allowance's, then one more a second later", got)
	}
	// An allowance below 1/s still allows one retry, then one per interval.
	b = NewRatioBudget(0.1, 0.5)
	b.balance.Store(0)
	if got := tries(0, 0, 1999*ms, 2*s); !slices.Equal(got, []bool{true, false, false, true}) {
		t.Fatalf("allowance of 0.5/s: %v; want one retry every 2s", got)
	}
}

func TestThrottleArithmetic(t *testing.T) {
	th := NewThrottle(10, 0.1)
	now := time.Now()
	if th.Tokens() != 10 || !th.tryRetry(now) {
		t.Fatalf("a new throttle has %v tokens and must allow retries", th.Tokens())
	}
	for i := 0; i < 4; i++ {
		th.failed(now, false, false)
	}
	if th.Tokens() != 6 || !th.tryRetry(now) {
		t.Fatalf("6 tokens of 10 must allow retries (have %v)", th.Tokens())
	}
	th.failed(now, false, false)
	if th.Tokens() != 5 || th.tryRetry(now) {
		t.Fatalf("at exactly half the tokens (%v) retries must stop", th.Tokens())
	}
	th.success()
	if math.Abs(th.Tokens()-5.1) > 1e-9 || !th.tryRetry(now) {
		t.Fatalf("a success refunds 0.1: %v", th.Tokens())
	}
	for i := 0; i < 100; i++ {
		th.failed(now, false, false)
	}
	if th.Tokens() != 0 {
		t.Fatalf("tokens %v, want floor 0", th.Tokens())
	}
	for i := 0; i < 1000; i++ {
		th.success()
	}
	if th.Tokens() != 10 {
		t.Fatalf("tokens %v, want cap 10", th.Tokens())
	}
}

func TestBudgetsStayInBoundsUnderConcurrency(t *testing.T) {
	rb := NewRatioBudget(0.3, 5)
	capMilli := int64(ratioBudgetCap * milli)
	th := NewThrottle(20, 0.5)
	var wg sync.WaitGroup
	now := time.Now()
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				rb.success()
				rb.tryRetry(now.Add(time.Duration(i) * time.Millisecond))
				th.failed(now, false, false)
				th.tryRetry(now)
				if i%3 == 0 {
					th.success()
				}
				if v := rb.balance.Load(); v < 0 || v > capMilli {
					t.Errorf("ratio balance %d out of [0, %d]", v, capMilli)
					return
				}
				if v := th.tokens.Load(); v < 0 || v > th.maxMilli {
					t.Errorf("throttle tokens %d out of [0, %d]", v, th.maxMilli)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestBudgetValidation(t *testing.T) {
	for _, b := range []Budget{
		NewRatioBudget(0, 1), NewRatioBudget(1.5, 1), NewRatioBudget(math.NaN(), 1),
		NewRatioBudget(0.1, -1), NewRatioBudget(0.1, math.Inf(1)),
		NewThrottle(0, 0.1), NewThrottle(1001, 0.1), NewThrottle(10, 0), NewThrottle(10, 11),
	} {
		var pe *PolicyError
		if err := (Policy{Budget: b}).Validate(); !errors.As(err, &pe) || pe.Field != "Budget" {
			t.Errorf("Validate() = %v, want a PolicyError on Budget", err)
		}
	}
}

func TestBudgetStopsRetries(t *testing.T) {
	p := exact()
	p.Budget = NewThrottle(2, 1) // starts at 2 tokens: the first failure leaves 1, which is half
	var gaveUp []GiveUpEvent
	p.OnGiveUp = func(ev GiveUpEvent) { gaveUp = append(gaveUp, ev) }
	mds, _, err := runScript(context.Background(), p, fail(unavailable), fail(unavailable))
	e := stopOf(t, err)
	if len(mds) != 1 || e.Reason != StopBudget || status.Code(err) != codes.Unavailable {
		t.Fatalf("%d attempts, %v", len(mds), err)
	}
	if len(gaveUp) != 1 || gaveUp[0].Reason != StopBudget || gaveUp[0].Attempts != 1 || gaveUp[0].Code != codes.Unavailable ||
		gaveUp[0].Class != Transient || gaveUp[0].Err != err || gaveUp[0].Method != "/test.Service/Method" {
		t.Fatalf("OnGiveUp events %+v, want one saying the budget stopped the call", gaveUp)
	}
}
