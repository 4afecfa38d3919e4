package retry

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

func TestCreditBudgetArithmetic(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewCreditBudget(CreditBudgetConfig{NoFloor: true}) // deposits only: exact arithmetic
	if b.Balance() != DefaultCreditMax {
		t.Fatalf("a new budget holds %v, want %v", b.Balance(), DefaultCreditMax)
	}
	// Retries are allowed while the balance is above zero, and cost
	// nothing until they fail.
	for i := range 100 {
		if !b.tryRetry(t0) {
			t.Fatalf("retry %d refused with nothing charged", i+1)
		}
	}
	// A first attempt's fast failure costs nothing; a failed retry one.
	b.failed(t0, false, false, false)
	b.failed(t0, true, false, false)
	b.failed(t0, true, false, false)
	if b.Balance() != 1 || !b.tryRetry(t0) {
		t.Fatalf("balance %v after 2 failed retries, want 1 and retries allowed", b.Balance())
	}
	b.failed(t0, true, false, false)
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatalf("balance %v: at zero retries must stop", b.Balance())
	}
	// The balance goes into debt, down to -MaxDebt, and no further.
	for range 100 {
		b.failed(t0, true, false, false)
	}
	if b.Balance() != -DefaultCreditMaxDebt {
		t.Fatalf("balance %v, want the debt limit %v", b.Balance(), -DefaultCreditMaxDebt)
	}
	// Each success earns Ratio: 201 successes bring -20 back above zero.
	for range 200 {
		b.success()
	}
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatalf("balance %v after 200 successes, want 0", b.Balance())
	}
	b.success()
	if math.Abs(b.Balance()-0.1) > 1e-9 || !b.tryRetry(t0) {
		t.Fatalf("balance %v: a tenth of a retry above zero allows one", b.Balance())
	}
	for range 1000 {
		b.success()
	}
	if b.Balance() != DefaultCreditMax {
		t.Fatalf("balance %v, want capped at %v", b.Balance(), DefaultCreditMax)
	}
}

func TestCreditBudgetTimeoutRule(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewCreditBudget(CreditBudgetConfig{NoFloor: true})
	// In credit, a first attempt's timeout costs nothing: a replica that
	// hangs is retried in full.
	for range 10 {
		b.failed(t0, false, false, true)
	}
	if b.Balance() != DefaultCreditMax {
		t.Fatalf("balance %v: first-attempt timeouts were charged while in credit", b.Balance())
	}
	// In debt, each one is charged as a failed retry.
	for range 3 {
		b.failed(t0, true, false, false)
	}
	b.failed(t0, false, false, true)
	b.failed(t0, false, false, true)
	b.failed(t0, false, false, false) // a fast first failure: still free
	if b.Balance() != -2 {
		t.Fatalf("balance %v, want -2: two first-attempt timeouts charged at zero and below", b.Balance())
	}
}

func TestCreditBudgetFloor(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	const s = time.Second
	b := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, PerSecond: 0.5, MaxDebt: 4})
	for range 7 {
		b.failed(t0, true, false, false) // 3 → -4 (the limit)
	}
	if b.Balance() != -4 {
		t.Fatalf("balance %v", b.Balance())
	}
	// 0.5 retries a second: 8s pay the debt back, the 9th second earns
	// half a retry.
	if b.tryRetry(t0.Add(8*s)) || b.Balance() != 0 {
		t.Fatalf("after 8s: balance %v, want 0 and retries refused", b.Balance())
	}
	if !b.tryRetry(t0.Add(9*s)) || b.Balance() != 0.5 {
		t.Fatalf("after 9s: balance %v, want 0.5 and a retry allowed", b.Balance())
	}
	// A long idle fills the balance, and no more.
	if !b.tryRetry(t0.Add(time.Hour)) || b.Balance() != DefaultCreditMax {
		t.Fatalf("after an hour: balance %v, want full", b.Balance())
	}
	// Time that passed while the balance was full earns nothing later.
	b.failed(t0.Add(2*time.Hour), true, false, false)
	if b.Balance() != DefaultCreditMax-1 {
		t.Fatalf("balance %v: credit earned while full was kept", b.Balance())
	}
	// A clock at the Unix epoch is a clock like any other.
	e := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, PerSecond: 1})
	for range 5 {
		e.failed(time.Unix(0, 0), true, false, false)
	}
	if e.tryRetry(time.Unix(2, 0)); e.Balance() != 0 {
		t.Fatalf("epoch clock: balance %v after 2s at 1/s from -2, want 0", e.Balance())
	}
}

// TestCreditBudgetSuccessWritesNothingWhenFull: the healthy path reads the
// balance and writes nothing.
func TestCreditBudgetSuccessWritesNothingWhenFull(t *testing.T) {
	b := DefaultCreditBudget()
	if n := testing.AllocsPerRun(100, b.success); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	before := b.balance.Load()
	b.success()
	if b.balance.Load() != before {
		t.Fatal("a success changed a full balance")
	}
}

func TestThrottleArithmetic(t *testing.T) {
	th := NewThrottle(10, 0.1)
	now := time.Now()
	if th.Tokens() != 10 || !th.tryRetry(now) {
		t.Fatalf("a new throttle has %v tokens and must allow retries", th.Tokens())
	}
	for i := 0; i < 4; i++ {
		th.failed(now, false, false, false)
	}
	if th.Tokens() != 6 || !th.tryRetry(now) {
		t.Fatalf("6 tokens of 10 must allow retries (have %v)", th.Tokens())
	}
	th.failed(now, false, false, false)
	if th.Tokens() != 5 || th.tryRetry(now) {
		t.Fatalf("at exactly half the tokens (%v) retries must stop", th.Tokens())
	}
	th.success()
	if math.Abs(th.Tokens()-5.1) > 1e-9 || !th.tryRetry(now) {
		t.Fatalf("a success refunds 0.1: %v", th.Tokens())
	}
	for i := 0; i < 100; i++ {
		th.failed(now, false, false, false)
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
	cb := NewCreditBudget(CreditBudgetConfig{PerSecond: 5})
	th := NewThrottle(20, 0.5)
	var wg sync.WaitGroup
	now := time.Now()
	for range 16 {
		wg.Go(func() {
			for i := range 2000 {
				at := now.Add(time.Duration(i) * time.Millisecond)
				cb.success()
				cb.tryRetry(at)
				cb.failed(at, i%2 == 0, false, i%3 == 0)
				th.failed(now, false, false, false)
				th.tryRetry(now)
				if i%3 == 0 {
					th.success()
				}
				if v := cb.balance.Load(); v < cb.minBalance || v > cb.maxBalance {
					t.Errorf("credit balance %d out of [%d, %d]", v, cb.minBalance, cb.maxBalance)
					return
				}
				if v := th.tokens.Load(); v < 0 || v > th.maxMilli {
					t.Errorf("throttle tokens %d out of [0, %d]", v, th.maxMilli)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestBudgetValidation(t *testing.T) {
	for _, b := range []Budget{
		NewCreditBudget(CreditBudgetConfig{Ratio: 1.5}), NewCreditBudget(CreditBudgetConfig{Ratio: math.NaN()}),
		NewCreditBudget(CreditBudgetConfig{PerSecond: -1}), NewCreditBudget(CreditBudgetConfig{PerSecond: math.Inf(1)}),
		NewCreditBudget(CreditBudgetConfig{Max: 0.5}), NewCreditBudget(CreditBudgetConfig{MaxDebt: -1}),
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

// TestDeadlineEndedRetriesAreCharged: a retry that runs into the caller's
// deadline without an answer failed, for the budget; a call the caller
// cancels costs nothing.
func TestDeadlineEndedRetriesAreCharged(t *testing.T) {
	b := NewCreditBudget(CreditBudgetConfig{NoFloor: true})
	p := exact()
	p.Budget = b
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	c := mustCompile(p)
	call := &interceptor.Call{}
	c.Begin(expired, "/test.Service/Method", nil, call)
	call.Attempts = 2
	_, err := c.Failed(expired, call, interceptor.Outcome{Err: status.Error(codes.DeadlineExceeded, "context deadline exceeded"), Attempt: 2})
	if e := stopOf(t, err); e.Reason != StopCanceled || b.Balance() != DefaultCreditMax-1 {
		t.Fatalf("%v, balance %v: want StopCanceled and the retry charged", err, b.Balance())
	}
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	call = &interceptor.Call{}
	c.Begin(canceled, "/test.Service/Method", nil, call)
	call.Attempts = 2
	c.Failed(canceled, call, interceptor.Outcome{Err: status.Error(codes.Canceled, "context canceled"), Attempt: 2})
	if b.Balance() != DefaultCreditMax-1 {
		t.Fatalf("balance %v: a cancelled retry was charged", b.Balance())
	}
}
