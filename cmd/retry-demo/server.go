package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// step is what the flaky server does on one attempt of a scenario. The zero
// step answers OK.
type step struct {
	tokens int            // streams: tokens sent before the answer
	hang   bool           // block until the attempt's context ends
	fail   *status.Status // the error to answer with; nil means OK
	after  time.Duration  // > 0: answer with retry.RetryAfter(fail's code and message, after)
	refuse bool           // answer with retry.DoNotRetry(fail's code and message)
}

func ok() step { return step{} }

func hang() step { return step{hang: true} }

// fail answers with code and msg, carrying details (google.rpc.RetryInfo,
// google.rpc.QuotaFailure, ...) in the status.
func fail(c codes.Code, msg string, details ...protoadapt.MessageV1) step {
	st := status.New(c, msg)
	if len(details) > 0 {
		var err error
		if st, err = st.WithDetails(details...); err != nil {
			panic(err) // only with a detail that cannot be marshalled: a bug here
		}
	}
	return step{fail: st}
}

// afterTokens makes a stream send k tokens before the step's answer.
func (s step) afterTokens(k int) step {
	s.tokens = k
	return s
}

// withPushback makes the server answer through retry.RetryAfter: a
// grpc-retry-pushback-ms trailer and a google.rpc.RetryInfo detail of d.
func (s step) withPushback(d time.Duration) step {
	s.after = d
	return s
}

// doNotRetry makes the server answer through retry.DoNotRetry: pushback -1.
func (s step) doNotRetry() step {
	s.refuse = true
	return s
}

func quotaFailure(subject, description string) *errdetails.QuotaFailure {
	return &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: description}}}
}

// describe says what s answers, for the "server saw" column.
func (s step) describe() string {
	if s.fail == nil {
		return "OK"
	}
	out := fmt.Sprintf("%v %q", s.fail.Code(), s.fail.Message())
	for _, d := range s.fail.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			out += fmt.Sprintf(" +RetryInfo %v", d.GetRetryDelay().AsDuration())
		case *errdetails.QuotaFailure:
			out += " +QuotaFailure"
		default:
			out += fmt.Sprintf(" +%T", d)
		}
	}
	switch {
	case s.after > 0:
		out += fmt.Sprintf(" +RetryInfo %v +pushback-ms %d (retry.RetryAfter)", s.after, s.after.Milliseconds())
	case s.refuse:
		out += " +pushback-ms -1 (retry.DoNotRetry)"
	}
	return out
}

// serverEvent is one attempt as the server saw it.
type serverEvent struct {
	method  string        // "Generate", "CallTool", ...
	attempt int           // the server's own count of attempts for the scenario
	prev    string        // the grpc-previous-rpc-attempts header ("" on a first attempt)
	key     string        // the idempotency key header ("" if none)
	answer  string        // what the server answered, unless hung
	hung    bool          // the attempt hung until its context ended
	sent    int           // streams: tokens sent before the answer
	took    time.Duration // time spent in the handler
}

// flakyServer is an InferenceService whose behaviour is scripted per
// scenario: the scenario's name arrives as the prompt (or the tool), and
// attempt n of that scenario does script[n-1] (the last step repeats).
// Nothing in it is random.
type flakyServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	idemHeader string
	scripts    map[string][]step // by scenario name; read-only once serving

	idle *sync.Cond // signalled when running drops to 0; uses mu

	mu      sync.Mutex
	running int                      // handlers running
	counts  map[string]int           // attempts seen, by scenario
	events  map[string][]serverEvent // by scenario
}

func newFlakyServer(idemHeader string, scenarios []scenario) *flakyServer {
	s := &flakyServer{
		idemHeader: idemHeader,
		scripts:    make(map[string][]step),
		counts:     make(map[string]int),
		events:     make(map[string][]serverEvent),
	}
	s.idle = sync.NewCond(&s.mu)
	for _, sc := range scenarios {
		s.scripts[sc.name] = sc.script
	}
	return s
}

// reset forgets every attempt, so that a new run of the scenarios starts
// from their first step.
func (s *flakyServer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	clear(s.events)
}

// attempts returns what the server saw of a scenario, once every handler has
// returned (a hung attempt's handler may end just after the client moved on).
func (s *flakyServer) attempts(name string) []serverEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.running > 0 {
		s.idle.Wait()
	}
	return s.events[name]
}

func (s *flakyServer) Generate(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	text, err := s.serve(ctx, "Generate", req.GetPrompt())
	if err != nil {
		return nil, err
	}
	return &inferencev1.GenerateResponse{Text: text}, nil
}

func (s *flakyServer) CallTool(ctx context.Context, req *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
	result, err := s.serve(ctx, "CallTool", req.GetTool())
	if err != nil {
		return nil, err
	}
	return &inferencev1.CallToolResponse{Result: result}, nil
}

// StreamGenerate streams the step's tokens, then answers as the step says
// (an OK step with no tokens set streams five).
func (s *flakyServer) StreamGenerate(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	ctx := stream.Context()
	_, err := s.serveWith(ctx, "StreamGenerate", req.GetPrompt(), func(st step, ev *serverEvent) error {
		n := st.tokens
		if st.fail == nil && !st.hang && n == 0 {
			n = 5
		}
		for i := range n {
			if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: fmt.Sprintf("tok%d", i), Index: int32(i)}); err != nil {
				return err
			}
		}
		ev.sent = n
		return nil
	})
	return err
}

// serve plays the next step of the scenario name and records the attempt.
func (s *flakyServer) serve(ctx context.Context, method, name string) (string, error) {
	return s.serveWith(ctx, method, name, nil)
}

// serveWith is serve, with before (if not nil) run before the step's
// answer: a stream sends its messages there.
func (s *flakyServer) serveWith(ctx context.Context, method, name string, before func(step, *serverEvent) error) (string, error) {
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.running--; s.running == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
	}()
	start := time.Now()

	s.mu.Lock()
	script, known := s.scripts[name]
	s.counts[name]++
	n := s.counts[name]
	s.mu.Unlock()
	if !known || len(script) == 0 {
		return "", status.Errorf(codes.NotFound, "no scenario %q", name)
	}
	st := script[min(n, len(script))-1]

	md, _ := metadata.FromIncomingContext(ctx)
	ev := serverEvent{
		method:  method,
		attempt: n,
		prev:    firstValue(md, retry.PreviousAttemptsHeader),
		key:     firstValue(md, s.idemHeader),
	}
	var text string
	var err error
	if before != nil {
		if err := before(st, &ev); err != nil {
			return "", err
		}
	}
	switch {
	case st.hang:
		<-ctx.Done()
		err = status.FromContextError(ctx.Err()).Err()
		ev.hung = true
	case st.fail != nil:
		switch {
		case st.after > 0:
			err = retry.RetryAfter(ctx, st.fail.Code(), st.fail.Message(), st.after)
		case st.refuse:
			err = retry.DoNotRetry(ctx, st.fail.Code(), st.fail.Message())
		default:
			err = st.fail.Err()
		}
		ev.answer = st.describe()
		if ev.sent > 0 {
			ev.answer = fmt.Sprintf("%d tokens, then %s", ev.sent, ev.answer)
		}
	default:
		text = fmt.Sprintf("%s: done on attempt %d", name, n)
		ev.answer = "OK"
		if ev.sent > 0 {
			ev.answer = fmt.Sprintf("%d tokens, then OK", ev.sent)
		}
	}
	ev.took = time.Since(start)

	s.mu.Lock()
	s.events[name] = append(s.events[name], ev)
	s.mu.Unlock()
	return text, err
}

func firstValue(md metadata.MD, key string) string {
	if key == "" {
		return ""
	}
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
