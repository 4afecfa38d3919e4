package retry_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Logging retries and give-ups with log/slog. LogRetries and LogGiveUps
// take go-grpc-middleware's logging.Logger, which has one method; for a
// *slog.Logger it is this LoggerFunc (logging.Level is slog.Level). Zap,
// zerolog and the others take a LoggerFunc of the same shape.
func Example_slog() {
	// The only change to the logger for this example: no timestamps, so
	// that its output is exact.
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}))

	l := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	policy := retry.Policy{
		MaxAttempts:    2,
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry:        retry.LogRetries(l), // INFO "retrying call"
		OnGiveUp:       retry.LogGiveUps(l), // WARN "retry gave up" (DEBUG for a permanent error)
	}

	srv := &exampleServer{generate: failFirst(2, codes.Unavailable, "never reached")}
	client, stop := serve(srv, retry.DialOptions(policy)...)
	defer stop()
	_, _ = client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	// Output:
	// level=INFO msg="retrying call" grpc.component=client grpc.service=inference.v1.InferenceService grpc.method=Generate grpc.code=Unavailable grpc.error="rpc error: code = Unavailable desc = attempt 1 failed" grpc.retry.attempt=1 grpc.retry.class=transient grpc.retry.delay=1ms grpc.retry.pushback=false
	// level=WARN msg="retry gave up" grpc.component=client grpc.service=inference.v1.InferenceService grpc.method=Generate grpc.code=Unavailable grpc.error="rpc error: code = Unavailable desc = attempt 2 failed (retry: 2 attempt(s), stopped: max attempts)" grpc.retry.attempts=2 grpc.retry.class=transient grpc.retry.reason="max attempts" grpc.retry.suppressed=0
}
