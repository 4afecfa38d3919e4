package retry

import (
	"context"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// fakeClock is a clock whose Sleep returns at once, advancing Now by the
// requested duration and recording it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// fixedRand returns a rand func that yields rs in turn, then repeats the
// last one.
func fixedRand(rs ...float64) func() float64 {
	var mu sync.Mutex
	i := 0
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		r := rs[min(i, len(rs)-1)]
		i++
		return r
	}
}

// outcome is one scripted attempt result for runScript.
type outcome struct {
	err     error
	trailer metadata.MD
	header  metadata.MD // non-nil: response headers had arrived
}

func fail(st *status.Status, kv ...string) outcome {
	return outcome{err: st.Err(), trailer: metadata.Pairs(kv...)}
}

// runScript runs one unary call through the interceptor built from p, with
// a fake clock, against an invoker that returns the scripted outcomes in turn
// (OK once they run out). It returns the final error, the attempts made, the
// outgoing metadata of each attempt and the clock's recorded sleeps.
func runScript(ctx context.Context, p Policy, outcomes ...outcome) (mds []metadata.MD, sleeps []time.Duration, err error) {
	clk := newFakeClock()
	if p.clock == nil {
		p.clock = clk
	}
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		mds = append(mds, md)
		if len(mds) > len(outcomes) {
			return nil
		}
		o := outcomes[len(mds)-1]
		for _, opt := range opts {
			switch opt := opt.(type) {
			case grpc.TrailerCallOption:
				*opt.TrailerAddr = o.trailer
			case grpc.HeaderCallOption:
				*opt.HeaderAddr = o.header
			}
		}
		return o.err
	}
	err = interceptor.Unary(mustCompile(p))(ctx, "/test.Service/Method", nil, nil, nil, invoker)
	return mds, clk.Sleeps(), err
}

func quotaFailure() *errdetails.QuotaFailure {
	return &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "project:demo"}}}
}

// lateClock is a fakeClock whose sleeps end late by a fixed amount, as
// timers do on a loaded machine.
type lateClock struct {
	fakeClock
	late time.Duration
}

func (l *lateClock) Sleep(ctx context.Context, d time.Duration) error {
	return l.fakeClock.Sleep(ctx, d+l.late)
}

// expiringClock is a fakeClock whose sleeps end with the context's deadline
// firing first, as a real wait does when the timer and the deadline are
// both due.
type expiringClock struct{ fakeClock }

func (e *expiringClock) Sleep(ctx context.Context, d time.Duration) error {
	e.fakeClock.Sleep(ctx, d)
	return context.DeadlineExceeded
}
