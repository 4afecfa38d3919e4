package retry_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// hedgeAttempt returns the number of the attempt whose server context is
// ctx, from its x-retry-hedge header (1 for the first attempt).
func hedgeAttempt(ctx context.Context) int {
	if h := metadata.ValueFromIncomingContext(ctx, retry.HedgeHeader); len(h) == 1 {
		n, _ := strconv.Atoi(h[0])
		return n + 1
	}
	return 1
}

// TestLogHedges checks the entries LogHedges makes for a call whose first
// attempt is slow (a hedge is sent on time, and wins) and for a call whose
// first attempt fails (a hedge replaces it, and wins): level, message,
// context, and every field with its value and type, in order, followed by
// the context's logging fields.
func TestLogHedges(t *testing.T) {
	srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
		if hedgeAttempt(ctx) > 1 {
			return "ok", nil
		}
		if metadata.ValueFromIncomingContext(ctx, "x-first")[0] == "fails" {
			return "", status.Error(codes.Unavailable, "reset")
		}
		<-ctx.Done()
		return "", status.FromContextError(ctx.Err()).Err()
	}}
	log := new(fakeLogger)
	call := func(delay time.Duration, first string) {
		t.Helper()
		p := testPolicy(2)
		p.Hedging = &retry.Hedging{Delay: delay}
		p.OnHedge = retry.LogHedges(log)
		client := start(t, srv, retry.DialOptions(p)...)
		ctx := context.WithValue(testCtx(t), ctxKey{}, "caller")
		ctx = logging.InjectFields(ctx, logging.Fields{"request.id", "r-1", "grpc.retry.hedge", "not ours"})
		ctx = metadata.AppendToOutgoingContext(ctx, "x-first", first)
		if res, err := client.Generate(ctx, &inferencev1.GenerateRequest{}); err != nil || res.GetText() != "ok" {
			t.Fatalf("Generate: %v, %v", res, err)
		}
	}
	call(20*time.Millisecond, "slow")
	call(time.Hour, "fails")

	names := []any{
		"grpc.component", "client",
		"grpc.service", "inference.v1.InferenceService",
		"grpc.method", "Generate",
	}
	won := append(append([]any{}, names...),
		"grpc.retry.attempt", 2,
		"grpc.retry.hedge", "won",
		"grpc.retry.delay", time.Duration(0),
		"request.id", "r-1",
	)
	want := []struct {
		msg    string
		fields []any
	}{
		{"hedge sent", append(append([]any{}, names...),
			"grpc.retry.attempt", 2,
			"grpc.retry.hedge", "sent",
			"grpc.retry.delay", 20*time.Millisecond,
			"request.id", "r-1",
		)},
		{"hedge won", won},
		{"hedge sent", append(append([]any{}, names...),
			"grpc.code", "Unavailable",
			"grpc.error", "rpc error: code = Unavailable desc = reset",
			"grpc.retry.class", "transient",
			"grpc.retry.attempt", 2,
			"grpc.retry.hedge", "sent",
			"grpc.retry.delay", time.Duration(0),
			"request.id", "r-1",
		)},
		{"hedge won", won},
	}
	got := log.all()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.level != logging.LevelDebug || e.msg != want[i].msg {
			t.Errorf("entry %d: level %v msg %q, want DEBUG %q", i, e.level, e.msg, want[i].msg)
		}
		if e.ctx.Value(ctxKey{}) != "caller" {
			t.Errorf("entry %d: not logged with the caller's context", i)
		}
		if !reflect.DeepEqual(e.fields, want[i].fields) {
			t.Errorf("entry %d fields:\n got %#v\nwant %#v", i, e.fields, want[i].fields)
		}
	}
}

// TestLogHedgesDenied: a denied hedge is an INFO entry with the count of
// denials not logged (none for the first), whether it was due on time or
// replaced a failed attempt; an event built by hand (no context) is
// logged; a nil Logger panics at once.
func TestLogHedgesDenied(t *testing.T) {
	log := new(fakeLogger)
	hook := retry.LogHedgesEvery(log, 0)
	hook(retry.HedgeEvent{Method: "/a.B/C", Kind: retry.HedgeDenied, Attempt: 2, Delay: 40 * time.Millisecond})
	hook(retry.HedgeEvent{Method: "/a.B/C", Kind: retry.HedgeDenied, Attempt: 3,
		Err: errors.New("down"), Code: codes.Unavailable, Class: retry.Transient})
	want := [][]any{
		{
			"grpc.component", "client", "grpc.service", "a.B", "grpc.method", "C",
			"grpc.retry.attempt", 2, "grpc.retry.hedge", "denied", "grpc.retry.delay", 40 * time.Millisecond,
			"grpc.retry.suppressed", 0,
		},
		{
			"grpc.component", "client", "grpc.service", "a.B", "grpc.method", "C",
			"grpc.code", "Unavailable", "grpc.error", "down", "grpc.retry.class", "transient",
			"grpc.retry.attempt", 3, "grpc.retry.hedge", "denied", "grpc.retry.delay", time.Duration(0),
			"grpc.retry.suppressed", 0,
		},
	}
	got := log.all()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.level != logging.LevelInfo || e.msg != "hedge denied" || e.ctx == nil || !reflect.DeepEqual(e.fields, want[i]) {
			t.Errorf("entry %d: %v %q %#v\nwant INFO \"hedge denied\" %#v", i, e.level, e.msg, e.fields, want[i])
		}
	}

	defer func() {
		if r := recover(); r == nil {
			t.Fatal("LogHedges(nil) did not panic")
		}
	}()
	retry.LogHedges(nil)
}
