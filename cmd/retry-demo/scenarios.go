package main

import (
	"context"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// callerDeadline is the deadline every scenario's caller sets on its call.
const callerDeadline = 1500 * time.Millisecond

// scenario is one scripted misbehaviour of the server and the call that
// meets it. It does not care about the call's shape: call can as well open a
// stream, send and receive, and return what it got.
type scenario struct {
	name   string // shown in the output; also the prompt (or tool) that selects the script
	method string // the RPC, for the output
	about  string // what happens, in a few words
	script []step // the server's answer to attempt 1, 2, ...; the last step repeats
	// call makes the scenario's call on c and returns the response text.
	call func(ctx context.Context, c inferencev1.InferenceServiceClient, name string) (string, error)
}

// unaryScenarios are the scenarios run through retry.Unary.
func unaryScenarios() []scenario {
	return []scenario{{
		name:   "blip",
		method: "Generate",
		about:  "model server restarting: Unavailable twice, then OK",
		script: []step{
			fail(codes.Unavailable, "model server restarting"),
			fail(codes.Unavailable, "model server restarting"),
			ok(),
		},
		call: generate,
	}, {
		name:   "rate-limited",
		method: "Generate",
		about:  "ResourceExhausted with 250ms pushback (retry.RetryAfter: trailer and RetryInfo), then OK",
		script: []step{
			fail(codes.ResourceExhausted, "rate limit").withPushback(250 * time.Millisecond),
			ok(),
		},
		call: generate,
	}, {
		name:   "quota",
		method: "Generate",
		about:  "ResourceExhausted with QuotaFailure: a spent quota, permanent by default",
		script: []step{
			fail(codes.ResourceExhausted, "quota spent",
				quotaFailure("project:demo", "monthly tokens")),
		},
		call: generate,
	}, {
		name:   "bad-request",
		method: "Generate",
		about:  "InvalidArgument: permanent, never retried",
		script: []step{fail(codes.InvalidArgument, "prompt too long")},
		call:   generate,
	}, {
		name:   "slow",
		method: "Generate",
		about:  "attempt 1 hangs, attempt 2 answers at once: PerAttemptTimeout cuts attempt 1",
		script: []step{hang(), ok()},
		call:   generate,
	}, {
		name:   "outage",
		method: "Generate",
		about:  "always Unavailable: gives up after MaxAttempts, well within the deadline",
		script: []step{fail(codes.Unavailable, "no healthy replicas")},
		call:   generate,
	}, {
		name:   "draining",
		method: "Generate",
		about:  "always Unavailable with 1s pushback: stops before sleeping past the 1.5s deadline",
		script: []step{fail(codes.Unavailable, "server draining").withPushback(time.Second)},
		call:   generate,
	}, {
		name:   "overloaded",
		method: "Generate",
		about:  "Unavailable with retry.DoNotRetry (pushback -1): the server asks not to retry",
		script: []step{fail(codes.Unavailable, "shedding load").doNotRetry(), ok()},
		call:   generate,
	}, {
		name:   "send-email",
		method: "CallTool",
		about:  "non-idempotent tool call, Unavailable once: outside Policy.Methods, not retried",
		script: []step{fail(codes.Unavailable, "tool runner restarting"), ok()},
		call:   callTool,
	}}
}

// streamScenarios are the scenarios for streaming calls, run through
// retry.Stream: a stream is retried only until it commits (its first
// response message or headers), so the caller never sees a token twice.
func streamScenarios() []scenario {
	return []scenario{{
		name:   "token-stream",
		method: "StreamGenerate",
		about:  "fails before its first token, then streams: retried, every token once",
		script: []step{fail(codes.Unavailable, "replica lost"), ok()},
		call:   streamGenerate,
	}, {
		name:   "mid-stream",
		method: "StreamGenerate",
		about:  "fails after 3 tokens: committed, so the error surfaces with no duplicates",
		script: []step{fail(codes.Unavailable, "replica lost").afterTokens(3), ok()},
		call:   streamGenerate,
	}}
}

// streamGenerate returns the tokens it received, joined by spaces.
func streamGenerate(ctx context.Context, c inferencev1.InferenceServiceClient, name string) (string, error) {
	stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: name, MaxTokens: 5})
	if err != nil {
		return "", err
	}
	var tokens []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return strings.Join(tokens, " "), nil
		}
		if err != nil {
			return strings.Join(tokens, " "), err
		}
		tokens = append(tokens, m.GetToken())
	}
}

func generate(ctx context.Context, c inferencev1.InferenceServiceClient, name string) (string, error) {
	resp, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: name, MaxTokens: 16})
	return resp.GetText(), err
}

func callTool(ctx context.Context, c inferencev1.InferenceServiceClient, name string) (string, error) {
	resp, err := c.CallTool(ctx, &inferencev1.CallToolRequest{Tool: name, Arguments: `{"to":"ops@example.com"}`})
	return resp.GetResult(), err
}
