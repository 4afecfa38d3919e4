package retry_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// entry is one call of a fakeLogger.
type entry struct {
	ctx    context.Context
	level  logging.Level
	msg    string
	fields []any
}

// fakeLogger is a logging.Logger that keeps what it is given.
type fakeLogger struct {
	mu      sync.Mutex
	entries []entry
}

func (l *fakeLogger) Log(ctx context.Context, level logging.Level, msg string, fields ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entry{ctx, level, msg, fields})
}

func (l *fakeLogger) all() []entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]entry(nil), l.entries...)
}

type ctxKey struct{}

// TestLogRetries checks the entries LogRetries makes for a call retried
// twice, once after backoff and once after server pushback: level,
// message, context, and every field with its value and type, in order,
// followed by the context's logging fields (which do not override ours).
func TestLogRetries(t *testing.T) {
	srv := &exampleServer{generate: func(ctx context.Context, attempt int) (string, error) {
		switch attempt {
		case 1:
			return "", status.Error(codes.Unavailable, "reset")
		case 2:
			return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "busy", 3*time.Millisecond)
		}
		return "ok", nil
	}}
	log := new(fakeLogger)
	p := testPolicy(3)
	p.OnRetry = retry.LogRetries(log)
	client := start(t, srv, retry.DialOptions(p)...)

	ctx := context.WithValue(testCtx(t), ctxKey{}, "caller")
	ctx = logging.InjectFields(ctx, logging.Fields{"request.id", "r-1", "grpc.code", "not ours"})
	if _, err := client.Generate(ctx, &inferencev1.GenerateRequest{}); err != nil {
		t.Fatalf("Generate: %v", err)
	}

	want := [][]any{
		{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "Unavailable",
			"grpc.error", "rpc error: code = Unavailable desc = reset",
			"grpc.retry.attempt", 1,
			"grpc.retry.class", "transient",
			"grpc.retry.delay", time.Millisecond,
			"grpc.retry.pushback", false,
			"request.id", "r-1",
		},
		{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "ResourceExhausted",
			"grpc.error", "rpc error: code = ResourceExhausted desc = busy",
			"grpc.retry.attempt", 2,
			"grpc.retry.class", "rate-limited",
			"grpc.retry.delay", 3 * time.Millisecond,
			"grpc.retry.pushback", true,
			"request.id", "r-1",
		},
	}
	got := log.all()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.level != logging.LevelInfo || e.msg != "retrying call" {
			t.Errorf("entry %d: level %v msg %q, want INFO \"retrying call\"", i, e.level, e.msg)
		}
		if e.ctx.Value(ctxKey{}) != "caller" {
			t.Errorf("entry %d: not logged with the caller's context", i)
		}
		if !reflect.DeepEqual(e.fields, want[i]) {
			t.Errorf("entry %d fields:\n got %#v\nwant %#v", i, e.fields, want[i])
		}
	}
}

// TestLogRetriesEdgeCases: a RetryEvent built by hand (no context, no
// error, a malformed method) is logged without panicking; a nil Logger
// panics at once.
func TestLogRetriesEdgeCases(t *testing.T) {
	log := new(fakeLogger)
	retry.LogRetries(log)(retry.RetryEvent{Method: "bad"})
	e := log.all()
	if len(e) != 1 || e[0].ctx == nil {
		t.Fatalf("entries %+v, want one with a non-nil context", e)
	}
	if e[0].fields[3] != "unknown" || e[0].fields[5] != "unknown" || e[0].fields[9] != "" {
		t.Errorf("fields %v: want service and method \"unknown\", empty error", e[0].fields)
	}

	defer func() {
		if r := recover(); r == nil {
			t.Fatal("LogRetries(nil) did not panic")
		}
	}()
	retry.LogRetries(nil)
}

// TestLogRetriesLevelWrapper: the documented way to log at another level.
func TestLogRetriesLevelWrapper(t *testing.T) {
	log := new(fakeLogger)
	debug := logging.LoggerFunc(func(ctx context.Context, _ logging.Level, msg string, f ...any) {
		log.Log(ctx, logging.LevelDebug, msg, f...)
	})
	retry.LogRetries(debug)(retry.RetryEvent{
		Context: context.Background(),
		Method:  "/a.B/C",
		Err:     errors.New("x"),
	})
	if e := log.all(); len(e) != 1 || e[0].level != logging.LevelDebug {
		t.Fatalf("entries %+v, want one at DEBUG", e)
	}
}

// TestLogGiveUps checks the entries LogGiveUps makes: a warning for a
// retryable failure that ran out of attempts, a debug entry for a
// permanent error, with the attempts and the stop reason.
func TestLogGiveUps(t *testing.T) {
	srv := &exampleServer{generate: func(ctx context.Context, attempt int) (string, error) {
		return "", status.Error(codes.Unavailable, "down")
	}}
	log := new(fakeLogger)
	p := testPolicy(2)
	p.OnGiveUp = retry.LogGiveUps(log)
	client := start(t, srv, retry.DialOptions(p)...)
	if _, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Generate: %v", err)
	}
	srv.generate = func(ctx context.Context, attempt int) (string, error) {
		return "", status.Error(codes.NotFound, "no such model")
	}
	if _, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("Generate: %v", err)
	}
	got := log.all()
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(got), got)
	}
	want := []struct {
		level  logging.Level
		fields []any
	}{
		{logging.LevelWarn, []any{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "Unavailable",
			"grpc.error", "rpc error: code = Unavailable desc = down (retry: 2 attempt(s), stopped: max attempts)",
			"grpc.retry.attempts", 2,
			"grpc.retry.class", "transient",
			"grpc.retry.reason", "max attempts",
			"grpc.retry.suppressed", 0,
		}},
		{logging.LevelDebug, []any{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "NotFound",
			"grpc.error", "rpc error: code = NotFound desc = no such model (retry: 1 attempt(s), stopped: permanent error)",
			"grpc.retry.attempts", 1,
			"grpc.retry.class", "permanent",
			"grpc.retry.reason", "permanent error",
			"grpc.retry.suppressed", 0,
		}},
	}
	for i, e := range got {
		if e.level != want[i].level || e.msg != "retry gave up" || !reflect.DeepEqual(e.fields, want[i].fields) {
			t.Errorf("entry %d: %v %q %#v\nwant %v %#v", i, e.level, e.msg, e.fields, want[i].level, want[i].fields)
		}
	}
}
