package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// The herd study's backoff at scale 1, as in the AWS simulation: base 5ms,
// cap 2s. The study sleeps base × 2^attempt with attempt starting at 1, so
// its first sleep is 10ms: that is our InitialBackoff (our first sleep).
const (
	herdBase        = 10 * time.Millisecond
	herdCap         = 2 * time.Second
	herdMaxAttempts = 100
)

// herdJitters are the modes compared, un-jittered first (the reference).
var herdJitters = []retry.Jitter{retry.NoJitter, retry.FullJitter, retry.EqualJitter, retry.DecorrelatedJitter, retry.ProportionalJitter}

// awsPublished are the study's results at 100 clients (simulated time).
var awsPublished = map[retry.Jitter]struct {
	calls int
	time  time.Duration
}{
	retry.NoJitter:           {1861, 63 * time.Second},
	retry.FullJitter:         {796, 4900 * time.Millisecond},
	retry.EqualJitter:        {812, 6500 * time.Millisecond},
	retry.DecorrelatedJitter: {1001, 4600 * time.Millisecond},
}

type herdConfig struct {
	clients int
	scale   float64       // multiplies the base, the cap and the network delays
	base    time.Duration // InitialBackoff at scale 1 (the study's base is 5ms)
	runs    int           // runs per jitter mode, averaged
	jitters []retry.Jitter
	seed    uint64
}

// herdResult is one run, or the mean of several.
type herdResult struct {
	jitter     retry.Jitter
	calls      float64       // write attempts the server saw
	completion time.Duration // until the last client finished
	writes     int64         // successful writes: must be cfg.clients per run
	failed     int           // clients that gave up
}

// herdClassify retries the OCC conflict: Aborted is Permanent by default
// (it asks for a retry of the whole read-modify-write, which is exactly
// what one attempt here is).
func herdClassify(st *status.Status, md metadata.MD) retry.Class {
	if st.Code() == codes.Aborted {
		return retry.Transient
	}
	return retry.Classify(st, md)
}

// herdPolicy is the study's client: exponential backoff from cfg.base
// (5ms) capped at 2s, both × cfg.scale, no budget, up to 100 attempts.
func herdPolicy(j retry.Jitter, cfg herdConfig) retry.Policy {
	return retry.Policy{
		MaxAttempts:    herdMaxAttempts,
		InitialBackoff: time.Duration(float64(cfg.base) * cfg.scale),
		MaxBackoff:     time.Duration(float64(herdCap) * cfg.scale),
		Jitter:         j,
		Budget:         retry.NoBudget,
		Classify:       herdClassify,
	}
}

// runHerd lets cfg.clients clients, each with its own connection, start
// together and each make one write (one logical call) to the OCC server.
func runHerd(ctx context.Context, cfg herdConfig, j retry.Jitter) (herdResult, error) {
	srv := &herdServer{scale: cfg.scale, seed: cfg.seed}
	bs := startServer(srv)
	defer bs.stop()

	p := herdPolicy(j, cfg)
	conns, closeAll, err := bs.dialClients(ctx, cfg.clients, func() retry.Policy { return p })
	if err != nil {
		return herdResult{}, err
	}
	defer closeAll()

	// A bound far beyond the slowest run, so that a stuck run still ends.
	bound := time.Duration(herdMaxAttempts)*(p.MaxBackoff+time.Duration(100*cfg.scale*float64(time.Millisecond))) + 10*time.Second
	var (
		t0     time.Time
		start  = make(chan struct{})
		wg     sync.WaitGroup
		mu     sync.Mutex
		last   time.Duration
		failed int
	)
	for i, cc := range conns {
		client := inferencev1.NewInferenceServiceClient(cc)
		wg.Go(func() {
			<-start
			cctx, cancel := context.WithTimeout(ctx, bound)
			defer cancel()
			cctx = metadata.AppendToOutgoingContext(cctx, hdrClient, strconv.Itoa(i))
			_, err := client.Generate(cctx, &inferencev1.GenerateRequest{Prompt: "write"})
			end := time.Since(t0)
			mu.Lock()
			last = max(last, end)
			if err != nil {
				failed++
			}
			mu.Unlock()
		})
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	return herdResult{
		jitter:     j,
		calls:      float64(srv.calls.Load()),
		completion: last,
		writes:     srv.version.Load(),
		failed:     failed,
	}, nil
}
