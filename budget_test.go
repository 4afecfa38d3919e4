package retry

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
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
	b.failed(t0, attemptFailure{})
	b.failed(t0, attemptFailure{retry: true})
	b.failed(t0, attemptFailure{retry: true})
	if b.Balance() != 1 || !b.tryRetry(t0) {
		t.Fatalf("balance %v after 2 failed retries, want 1 and retries allowed", b.Balance())
	}
	b.failed(t0, attemptFailure{retry: true})
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatalf("balance %v: at zero retries must stop", b.Balance())
	}
	// The balance goes into debt, down to -MaxDebt, and no further.
	for range 100 {
		b.failed(t0, attemptFailure{retry: true})
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
		b.failed(t0, attemptFailure{timeout: true})
	}
	if b.Balance() != DefaultCreditMax {
		t.Fatalf("balance %v: first-attempt timeouts were charged while in credit", b.Balance())
	}
	// In debt, each one is charged as a failed retry.
	for range 3 {
		b.failed(t0, attemptFailure{retry: true})
	}
	b.failed(t0, attemptFailure{timeout: true})
	b.failed(t0, attemptFailure{timeout: true})
	b.failed(t0, attemptFailure{}) // a fast first failure: still free
	if b.Balance() != -2 {
		t.Fatalf("balance %v, want -2: two first-attempt timeouts charged at zero and below", b.Balance())
	}
}

func TestCreditBudgetFloor(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	const s = time.Second
	b := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, PerSecond: 0.5, MaxDebt: 4})
	for range 7 {
		b.failed(t0, attemptFailure{retry: true}) // 3 → -4 (the limit)
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
	b.failed(t0.Add(2*time.Hour), attemptFailure{retry: true})
	if b.Balance() != DefaultCreditMax-1 {
		t.Fatalf("balance %v: credit earned while full was kept", b.Balance())
	}
	// A clock at the Unix epoch is a clock like any other.
	e := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, PerSecond: 1})
	for range 5 {
		e.failed(time.Unix(0, 0), attemptFailure{retry: true})
	}
	if e.tryRetry(time.Unix(2, 0)); e.Balance() != 0 {
		t.Fatalf("epoch clock: balance %v after 2s at 1/s from -2, want 0", e.Balance())
	}
}

// TestCreditBudgetSuccessWritesNothingWhenFull: the healthy path reads the
// balance and writes nothing (no store, no compare-and-swap), so that
// successful calls on many cores do not contend for the budget's memory.
func TestCreditBudgetSuccessWritesNothingWhenFull(t *testing.T) {
	b := DefaultCreditBudget()
	var writes atomic.Int64
	b.balance.writes, b.earned.writes = &writes, &writes
	if n := testing.AllocsPerRun(100, b.success); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	for range 1000 {
		b.success()
	}
	if n := writes.Load(); n != 0 {
		t.Fatalf("1000 successes on a full balance made %d writes, want none", n)
	}
	// The count sees writes: a failed retry writes, and so does a success
	// below full.
	b.failed(time.Unix(1_000_000, 0), attemptFailure{retry: true})
	after := writes.Load()
	if after == 0 {
		t.Fatal("a failed retry made no write that the count saw")
	}
	b.success()
	if writes.Load() == after {
		t.Fatal("a success below full made no write that the count saw")
	}
}

// BenchmarkCreditBudgetSuccessFull: success on a full budget from every
// core at once. It only reads the balance, so it does not slow down with
// the number of cores.
func BenchmarkCreditBudgetSuccessFull(b *testing.B) {
	cb := DefaultCreditBudget()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cb.success()
		}
	})
}

// TestCreditBudgetDefaultExact: the default budget's deposits and floor
// together, with injected time; balances in milli-retries.
func TestCreditBudgetDefaultExact(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	b := DefaultCreditBudget()
	want := func(step string, milli int64, allowed bool, now time.Time) {
		t.Helper()
		if got := b.tryRetry(now); got != allowed || b.balance.Load() != milli {
			t.Fatalf("%s: balance %d milli-retries, retry allowed %v; want %d, %v", step, b.balance.Load(), got, milli, allowed)
		}
	}
	// 24 failed retries at t0: 3 → -20, the debt limit (the 24th is
	// forgiven). The floor starts counting at t0.
	for range 24 {
		b.failed(t0, attemptFailure{retry: true})
	}
	want("at the debt limit", -20_000, false, t0)
	// 150 successes earn 15 retries; 10 s of floor at 0.05/s earn 0.5.
	for range 150 {
		b.success()
	}
	want("150 successes and 10s", -4_500, false, at(10*time.Second))
	// 45 successes more: exactly 0, where retries stop.
	for range 45 {
		b.success()
	}
	want("at zero", 0, false, at(10*time.Second))
	// The floor earns one milli-retry every 20 ms: 19 ms earn nothing,
	// 20 ms one, which opens the budget; 41 ms two.
	want("19ms later", 0, false, at(10*time.Second+19*time.Millisecond))
	want("20ms later", 1, true, at(10*time.Second+20*time.Millisecond))
	want("41ms later", 2, true, at(10*time.Second+41*time.Millisecond))
	// Deposits up to Max: 30 successes earn 3, capped at 3.
	for range 30 {
		b.success()
	}
	want("30 successes", 3_000, true, at(10*time.Second+41*time.Millisecond))
	// Time spent full earns nothing later: full until 60 s, a failed
	// retry then takes one, and 2 s later the floor has paid 0.1 of it
	// back; a success earns 0.1 more.
	want("full at 60s", 3_000, true, at(60*time.Second))
	b.failed(at(60*time.Second), attemptFailure{retry: true})
	want("a failed retry at 60s", 2_000, true, at(60*time.Second))
	want("2s later", 2_100, true, at(62*time.Second))
	b.success()
	want("and a success", 2_200, true, at(62*time.Second))
	// After an idle hour (long enough to fill any balance) the budget is
	// full again.
	b.failed(at(time.Hour), attemptFailure{retry: true})
	want("a failed retry after an idle hour", 2_000, true, at(time.Hour))
	// While in debt, a first attempt's timeout takes one retry too; in
	// credit it is free.
	b.failed(at(time.Hour), attemptFailure{timeout: true})
	want("a first attempt's timeout in credit", 2_000, true, at(time.Hour))
	for range 3 {
		b.failed(at(time.Hour), attemptFailure{retry: true})
	}
	b.failed(at(time.Hour), attemptFailure{timeout: true})
	want("a first attempt's timeout in debt", -2_000, false, at(time.Hour))
}

// TestCreditBudgetConcurrentEarnPaysEachSpanOnce: goroutines earning the
// floor's credit at assorted times, out of order, pay each span of time
// once: the balance ends exactly where one goroutine earning up to the
// latest time would put it.
func TestCreditBudgetConcurrentEarnPaysEachSpanOnce(t *testing.T) {
	const (
		goroutines = 16
		calls      = 20000
	)
	t0 := time.Unix(1_000_000, 0)
	// 1 retry a second: one milli-retry per ms. A debt of 100 retries
	// leaves room for the 20 s of the run without reaching Max.
	b := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, PerSecond: 1, Max: 1, MaxDebt: 100})
	for range 101 {
		b.failed(t0, attemptFailure{retry: true}) // also starts the floor at t0
	}
	start := b.balance.Load()
	if start != -100_000 {
		t.Fatalf("balance %d milli-retries, want -100000", start)
	}
	var latest atomic.Int64
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-begin
			for i := range calls {
				// Times interleaved between goroutines, some behind the
				// mark already paid, none on a whole millisecond.
				d := time.Duration(i)*time.Millisecond + time.Duration((g*7919+i*104729)%3_000_000)*time.Nanosecond
				for {
					old := latest.Load()
					if int64(d) <= old || latest.CompareAndSwap(old, int64(d)) {
						break
					}
				}
				b.tryRetry(t0.Add(d))
			}
		})
	}
	close(begin)
	wg.Wait()
	want := start + latest.Load()/int64(time.Millisecond)
	if got := b.balance.Load(); got != want {
		t.Fatalf("balance %d milli-retries after earning up to %v, want %d (%+d)", got, time.Duration(latest.Load()), want, got-want)
	}
}

func TestThrottleArithmetic(t *testing.T) {
	th := NewThrottle(10, 0.1)
	now := time.Now()
	if th.Tokens() != 10 || !th.tryRetry(now) {
		t.Fatalf("a new throttle has %v tokens and must allow retries", th.Tokens())
	}
	for i := 0; i < 4; i++ {
		th.failed(now, attemptFailure{})
	}
	if th.Tokens() != 6 || !th.tryRetry(now) {
		t.Fatalf("6 tokens of 10 must allow retries (have %v)", th.Tokens())
	}
	th.failed(now, attemptFailure{})
	if th.Tokens() != 5 || th.tryRetry(now) {
		t.Fatalf("at exactly half the tokens (%v) retries must stop", th.Tokens())
	}
	th.success()
	if math.Abs(th.Tokens()-5.1) > 1e-9 || !th.tryRetry(now) {
		t.Fatalf("a success refunds 0.1: %v", th.Tokens())
	}
	for i := 0; i < 100; i++ {
		th.failed(now, attemptFailure{})
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
				cb.failed(at, attemptFailure{retry: i%2 == 0, timeout: i%3 == 0})
				th.failed(now, attemptFailure{})
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
	// A switch that turns a field off, with that field set: the error
	// names the field, its value and the switch.
	for _, tc := range []struct {
		cfg  CreditBudgetConfig
		want string
	}{
		{CreditBudgetConfig{Ratio: 0.2, NoDeposits: true}, "CreditBudgetConfig.Ratio 0.2: must be 0 with NoDeposits"},
		{CreditBudgetConfig{PerSecond: 1, NoFloor: true}, "CreditBudgetConfig.PerSecond 1: must be 0 with NoFloor"},
		{CreditBudgetConfig{MaxDebt: 5, NoDebt: true}, "CreditBudgetConfig.MaxDebt 5: must be 0 with NoDebt"},
	} {
		var pe *PolicyError
		err := (Policy{Budget: NewCreditBudget(tc.cfg)}).Validate()
		if !errors.As(err, &pe) || pe.Field != "Budget" || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "CreditBudget{") {
			t.Errorf("%+v: Validate() = %v, want a PolicyError on Budget saying %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []CreditBudgetConfig{{NoDeposits: true}, {NoFloor: true}, {NoDebt: true}, {NoDeposits: true, NoFloor: true, NoDebt: true}} {
		if err := (Policy{Budget: NewCreditBudget(cfg)}).Validate(); err != nil {
			t.Errorf("%+v: Validate() = %v, want nil", cfg, err)
		}
	}
}

// TestCreditBudgetNoDebt: NoDebt keeps the balance at zero or above
// (MaxDebt 0 alone means the default, 20): failed retries beyond the
// credit are forgiven, and the next deposit opens the budget again.
func TestCreditBudgetNoDebt(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	if got := NewCreditBudget(CreditBudgetConfig{}).Config().MaxDebt; got != DefaultCreditMaxDebt {
		t.Fatalf("MaxDebt 0 gives %v, want the default %v", got, DefaultCreditMaxDebt)
	}
	b := NewCreditBudget(CreditBudgetConfig{NoFloor: true, NoDebt: true})
	if cfg := b.Config(); cfg.MaxDebt != 0 || !cfg.NoDebt {
		t.Fatalf("Config() = %+v, want MaxDebt 0 and NoDebt", cfg)
	}
	for range 10 {
		b.failed(t0, attemptFailure{retry: true})
		b.failed(t0, attemptFailure{timeout: true}) // a first attempt's timeout, at zero
	}
	if b.Balance() != 0 || b.tryRetry(t0) {
		t.Fatalf("balance %v after 10 failed retries from 3, want 0 and retries refused", b.Balance())
	}
	b.success()
	if b.Balance() != 0.1 || !b.tryRetry(t0) {
		t.Fatalf("balance %v after a success, want 0.1 and a retry allowed", b.Balance())
	}
	// With the floor: from zero, 20 ms earn the one milli-retry that opens it.
	f := NewCreditBudget(CreditBudgetConfig{NoDeposits: true, NoDebt: true})
	for range 10 {
		f.failed(t0, attemptFailure{retry: true})
	}
	if f.tryRetry(t0.Add(19*time.Millisecond)) || !f.tryRetry(t0.Add(20*time.Millisecond)) || f.balance.Load() != 1 {
		t.Fatalf("balance %d milli-retries, want 1 after 20ms at 0.05/s from zero", f.balance.Load())
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

// TestDisconnectedFailuresCostNoCredit: a failed retry, or a first
// attempt's timeout while in debt, after which the channel had no ready
// connection costs the credit budget nothing, through the decision code as
// well as on the budget; the same failures with a connection are charged.
// The A6 throttle counts them all, as grpc-go does.
func TestDisconnectedFailuresCostNoCredit(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := NewCreditBudget(CreditBudgetConfig{NoFloor: true, NoDeposits: true})
	for range 10 {
		b.failed(t0, attemptFailure{retry: true, disconnected: true})
	}
	if b.Balance() != DefaultCreditMax {
		t.Fatalf("balance %v after 10 failed retries without a connection, want %v (nothing charged)", b.Balance(), float64(DefaultCreditMax))
	}
	for range 4 {
		b.failed(t0, attemptFailure{retry: true})
	}
	if b.Balance() != -1 {
		t.Fatalf("balance %v after 4 failed retries with a connection, want -1", b.Balance())
	}
	b.failed(t0, attemptFailure{timeout: true, disconnected: true}) // in debt, but no connection
	if b.Balance() != -1 {
		t.Fatalf("balance %v: a first attempt's timeout without a connection was charged", b.Balance())
	}
	b.failed(t0, attemptFailure{timeout: true})
	if b.Balance() != -2 {
		t.Fatalf("balance %v: a first attempt's timeout in debt was not charged", b.Balance())
	}

	th := NewThrottle(10, 0.1)
	th.failed(t0, attemptFailure{retry: true, disconnected: true})
	if th.Tokens() != 9 {
		t.Fatalf("throttle tokens %v after a failure without a connection, want 9", th.Tokens())
	}

	// Through Failed: Outcome.Disconnected reaches the budget.
	d := NewCreditBudget(CreditBudgetConfig{NoFloor: true, NoDeposits: true})
	p := exact()
	p.Budget = d
	c := mustCompile(p)
	ctx := context.Background()
	for _, disconnected := range []bool{true, false} {
		call := &interceptor.Call{}
		c.Begin(ctx, "/test.Service/Method", nil, call)
		call.Attempts = 2
		c.Failed(ctx, call, interceptor.Outcome{Err: status.Error(codes.Unavailable, "connection refused"), Attempt: 2, Disconnected: disconnected})
		c.Done(ctx, call, errors.New("ended"))
	}
	if d.Balance() != DefaultCreditMax-1 {
		t.Fatalf("balance %v after one retry failed without a connection and one with, want %v", d.Balance(), float64(DefaultCreditMax-1))
	}
}

// A Throttle in a validation error reads as the call that made it.
func TestThrottleInValidationError(t *testing.T) {
	err := (Policy{Budget: NewThrottle(-1, 0.1)}).Validate()
	if err == nil || !strings.Contains(err.Error(), "NewThrottle(-1, 0.1): NewThrottle maxTokens -1: must be in (0, 1000]") {
		t.Fatalf("Validate() = %v", err)
	}
}
