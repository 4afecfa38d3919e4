package retry_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// ExampleLogHedges logs the hedges of a call whose first attempt lands on
// a straggler, with log/slog (the adapter is the one of Example_slog).
// Hedges sent and won are logged at DEBUG, so the handler is set to show
// that level.
func ExampleLogHedges() {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: noTime}))
	l := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	policy := retry.Policy{
		MaxAttempts: 2,
		Hedging:     &retry.Hedging{Delay: 20 * time.Millisecond},
		OnHedge:     retry.LogHedges(l), // DEBUG "hedge sent", "hedge won"; INFO "hedge denied"
	}

	srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
		if len(metadata.ValueFromIncomingContext(ctx, retry.HedgeHeader)) == 0 {
			<-ctx.Done() // the first attempt straggles: it answers only when cancelled
			return "", status.FromContextError(ctx.Err()).Err()
		}
		return "a haiku", nil
	}}
	client, stop := serve(srv, retry.DialOptions(policy)...)
	defer stop()
	_, _ = client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	// Output:
	// level=DEBUG msg="hedge sent" grpc.component=client grpc.service=inference.v1.InferenceService grpc.method=Generate grpc.retry.attempt=2 grpc.retry.hedge=sent grpc.retry.delay=20ms
	// level=DEBUG msg="hedge won" grpc.component=client grpc.service=inference.v1.InferenceService grpc.method=Generate grpc.retry.attempt=2 grpc.retry.hedge=won grpc.retry.delay=0s
}
