package integration_test

// What the differential test expects: the two implementations agree,
// except where our README documents that we differ from grpc-go. Each
// documented difference is a rule about one failed attempt: the script
// makes one implementation retry it and the other stop (or stop with a
// different error). When the runs differ, the first attempt where they
// part must be explained by a rule, the side that stopped must show that
// attempt's failure exactly, and everything before must be equal.

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
)

// The documented differences, one line each.
const (
	ruleDeadline       = "deadline: before a wait that would end past the caller's deadline we return the last attempt's error at once; grpc-go sleeps into DEADLINE_EXCEEDED"
	ruleCap            = "MaxAttempts: grpc-go caps maxAttempts at 5; ours is not capped"
	ruleTooLong        = "pushback over MaxPushback: we stop at once with the attempt's error; grpc-go sleeps it (here: into the deadline)"
	ruleStrictPushback = "pushback parsing: we accept ASCII digits only; grpc-go's strconv.Atoi also accepts a sign (\"+2\", \"-0\")"
	ruleRetryInfo      = "RetryInfo: google.rpc.RetryInfo is honoured by us only (negative, repeated or over MaxPushback stops); grpc-go ignores details"
	ruleQuota          = "spent quota: RESOURCE_EXHAUSTED with a QuotaFailure detail and no pushback is permanent to us (AIP-194); grpc-go retries the code"
	ruleTimeout        = "server DEADLINE_EXCEEDED: we retry it (class Timeout) while the caller's deadline has room; grpc-go retries only retryableStatusCodes"
	ruleCompressed     = "replay buffer: grpc-go counts a compressed message's compressed size; we count its serialized size"
	ruleServerLimit    = "size-limit text from the server: a RESOURCE_EXHAUSTED whose message is gRPC's \"grpc: received message larger than max\" is not retried by us (StopLocal: the same message would break the limit again), even when the server sent it; grpc-go retries the code"
	ruleUnaryBuffer    = "replay buffer on unary calls: grpc-go's limit also applies to a unary request, which it then never retries; we retry unary calls whatever the request's size"
)

// Normalizations applied before comparing, one line each.
const (
	normMaxAttempts = "message: grpc-go prefixes the status message with \"max retries exhausted: failed after N attempts: \" and the wrapped error's text when its attempts run out; we keep the last attempt's message"
	normHeaderEnd   = "OnFinish after Header(): when grpc-go's Header() meets the end of the call it runs OnFinish with what it met there (OK for a trailers-only end, DEADLINE_EXCEEDED for a backoff cut by the deadline), and RecvMsg then returns the attempt's own status; we run OnFinish with the error the caller gets"
	normSendWait    = "SendMsg during a backoff: grpc-go's SendMsg retries when it finds its attempt failed, sleeping the backoff, and fails with DEADLINE_EXCEEDED if the deadline cuts it (RecvMsg then returns the attempt's status); our SendMsg never waits (retries happen on the receiving side)"
	normSendExhaust = "SendMsg when attempts run out: grpc-go's SendMsg, finding its attempt failed with no attempt left, fails with UNKNOWN \"max retries exhausted: failed after N attempts: EOF\" and runs OnFinish with it (RecvMsg then returns the attempt's status); our SendMsg returns nil or io.EOF and the status comes from RecvMsg"
	normReplayEnd   = "answer before the replay is done: when a client stream's retried attempt answers (OK) before grpc-go has replayed every kept message onto it, grpc-go's RecvMsg returns io.EOF without the response (the failed replay write ends its retry loop); ours replays on its own goroutine and delivers the response"
	normRecvLocal   = "trailer after the client's own receive error (message over the receive limit): it is whatever had arrived when the client ended the stream, a race for both"
	normSendLocal   = "trailer after the client's own send error (message over the send limit) while the server answers without reading: it is whatever had arrived when the client ended the stream, a race for both"
	normLocalRecv   = "RecvMsg after SendMsg's own error: ours returns that error; grpc-go's returns the server's status instead if it had already arrived (a race), else the same error"
	normLocalSend   = "a message over the send limit: the client cancels the stream it opened, so whether that attempt's headers reached the server (0 or 1 arrival) is a matter of timing, for both"
)

var sendExhausted = regexp.MustCompile(`^max retries exhausted: failed after \d+ attempts: EOF$`)

var maxRetriesPrefix = regexp.MustCompile(`^max retries exhausted: failed after (\d+) attempts: rpc error: code = \w+ desc = `)

// normalize applies the normalizations to o (of im) and returns the ones
// that changed something.
func normalize(sc *diffScript, im impl, o *observation) ([]string, error) {
	var used []string
	if im == builtin {
		if m := maxRetriesPrefix.FindStringSubmatch(o.Caller.Msg); m != nil {
			if n, _ := strconv.Atoi(m[1]); n != len(o.Server) {
				return nil, fmt.Errorf("grpc-go says it failed after %s attempts; the server saw %d", m[1], len(o.Server))
			}
			o.Caller.Msg = o.Caller.Msg[len(m[0]):]
			used = append(used, normMaxAttempts)
		}
		if n := len(o.Server); sc.Kind == diffClientStream && o.Caller.Code == codes.OK && len(o.Caller.Received) == 0 && n > 1 {
			if a := sc.attempt(n); a.Code == codes.OK && a.Responses == 1 && a.ReadFirst < len(sc.Sends) {
				o.Caller.Received = []string{strconv.FormatInt(ingestChunks(n), 10)}
				used = append(used, normReplayEnd)
			}
		}
		if o.Caller.sendCode == codes.Unknown && sendExhausted.MatchString(o.Caller.sendMsg) {
			o.Caller.SendErr, o.Caller.sendCode, o.Caller.sendMsg = "", codes.OK, ""
			o.Caller.Finished = []codes.Code{o.Caller.Code}
			used = append(used, normSendExhaust)
		}
		if o.Caller.sendCode == codes.DeadlineExceeded && o.Caller.Code != codes.DeadlineExceeded {
			o.Caller.SendErr, o.Caller.sendCode, o.Caller.sendMsg = "", codes.OK, ""
			o.Caller.Finished = []codes.Code{o.Caller.Code}
			o.endOutsideRecv = true
			used = append(used, normSendWait)
		}
		if (sc.CallHeader || sc.HeaderFirst || sc.HeaderWhileReceiving) && len(o.Caller.Finished) == 1 && o.Caller.Finished[0] != o.Caller.Code {
			o.Caller.Finished = []codes.Code{o.Caller.Code}
			o.endOutsideRecv = true
			used = append(used, normHeaderEnd)
		}
	}
	if sc.RecvLimit > 0 && strings.HasPrefix(o.Caller.Msg, "grpc: received message") && strings.Contains(o.Caller.Msg, "larger than max") && strings.Contains(o.Caller.Msg, strconv.Itoa(sc.RecvLimit)) {
		o.Caller.Trailer = nil
		used = append(used, normRecvLocal)
	}
	if im == builtin && o.Caller.SendErr != "" && (o.Caller.Code != o.Caller.sendCode || o.Caller.Msg != o.Caller.sendMsg) {
		o.Caller = callerView{Code: o.Caller.sendCode, Msg: o.Caller.sendMsg, SendErr: o.Caller.SendErr, sendCode: o.Caller.sendCode, sendMsg: o.Caller.sendMsg, Finished: o.Caller.Finished}
		used = append(used, normLocalRecv)
	}
	if sc.SendLimit > 0 && o.Caller.Code == codes.ResourceExhausted && o.Caller.SendErr != "" &&
		o.Caller.Code == o.Caller.sendCode && o.Caller.Msg == o.Caller.sendMsg &&
		strings.HasPrefix(o.Caller.Msg, "trying to send message larger than max") && strings.Contains(o.Caller.Msg, "vs. "+strconv.Itoa(sc.SendLimit)+")") {
		if o.Caller.Trailer != nil {
			o.Caller.Trailer = nil
			used = append(used, normSendLocal)
		}
	}
	if sc.SendLimit > 0 {
		if len(o.Server) > 1 || len(o.Server) == 1 && len(o.Server[0].Received) > 0 {
			return nil, fmt.Errorf("the server saw %v; a call whose first message breaks the send limit sends nothing", o.Server)
		}
		o.Server = nil
		used = append(used, normLocalSend)
	}
	return used, nil
}

// decision is what an implementation does after a failed attempt.
type decision struct {
	retry  bool
	reason retry.StopReason // ours, when !retry
	sleeps bool             // grpc-go, when !retry: it sleeps into the deadline
}

// preCommit reports whether attempt j of sc fails before the call commits
// for both implementations for reasons they share: no response headers or
// messages, no Context(), no local error.
func preCommit(sc *diffScript, j int) bool {
	a := sc.attempt(j)
	if sc.HeaderFirst {
		// Every retry happens inside the first Header(), before anything
		// else the caller does.
		return a.Code != codes.OK && !a.Header && a.Responses == 0
	}
	return a.Code != codes.OK && !a.Header && a.Responses == 0 && !sc.CallContext && sc.SendLimit == 0
}

// overflows reports whether the caller's messages outgrow the replay
// buffer: for us (streams only) and for grpc-go (every call).
func overflows(sc *diffScript) (ours, grpcGo bool) {
	if sc.HeaderFirst {
		return false, false // the caller sends only after Header() committed
	}
	return sc.Kind != diffUnary && sc.oursCount > sc.ReplayLimit, sc.grpcCount > sc.ReplayLimit
}

// atoiPushback is grpc-go's reading of a single pushback value.
func atoiPushback(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 0
}

// builtinDecision is what grpc-go's retry does after a pre-commit failure
// of attempt j (stream.go, csAttempt.shouldRetry).
func builtinDecision(sc *diffScript, j int) decision {
	a := sc.attempt(j)
	if _, g := overflows(sc); g {
		return decision{}
	}
	wait := time.Millisecond // at most, without pushback
	switch len(a.Pushback) {
	case 0:
	case 1:
		ms, ok := atoiPushback(a.Pushback[0])
		if !ok {
			return decision{}
		}
		wait = time.Duration(ms) * time.Millisecond
	default:
		return decision{}
	}
	if a.Code != codes.Unavailable && a.Code != codes.ResourceExhausted {
		return decision{}
	}
	if j >= min(sc.MaxAttempts, 5) {
		return decision{}
	}
	if wait >= sc.Deadline/2 {
		return decision{sleeps: true}
	}
	return decision{retry: true}
}

// oursPushback is our reading of attempt a's pushback: stop, or the wait.
func oursPushback(a diffAttempt) (stop bool, wait time.Duration) {
	switch len(a.Pushback) {
	case 0:
	case 1:
		v := a.Pushback[0]
		if v == "" || strings.Trim(v, "0123456789") != "" {
			return true, 0
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms > int64(time.Hour/time.Millisecond) {
			wait = time.Hour
		} else {
			wait = time.Duration(ms) * time.Millisecond
		}
	default:
		return true, 0
	}
	switch a.Detail {
	case retryInfoShort:
		wait = max(wait, time.Millisecond)
	case retryInfoLong:
		wait = max(wait, 3*time.Second)
	case retryInfoNegative, retryInfoTwice:
		return true, 0
	}
	return false, wait
}

// oursDecision is what our Policy (diffPolicy) decides after a pre-commit
// failure of attempt j, in the order of the README's stop checks.
func oursDecision(sc *diffScript, j int) decision {
	a := sc.attempt(j)
	if a.LimitText {
		return decision{reason: retry.StopLocal}
	}
	switch a.Code {
	case codes.Unavailable, codes.DeadlineExceeded:
	case codes.ResourceExhausted:
		if a.Detail == quotaFailureDetail && len(a.Pushback) == 0 {
			return decision{reason: retry.StopPermanent}
		}
	default:
		return decision{reason: retry.StopPermanent}
	}
	if o, _ := overflows(sc); o {
		return decision{reason: retry.StopCommitted}
	}
	if j >= sc.MaxAttempts {
		return decision{reason: retry.StopMaxAttempts}
	}
	stop, wait := oursPushback(a)
	if stop {
		return decision{reason: retry.StopPushback}
	}
	if wait > diffMaxPushback {
		return decision{reason: retry.StopPushbackTooLong}
	}
	if wait >= sc.Deadline/2 {
		return decision{reason: retry.StopDeadline}
	}
	return decision{retry: true}
}

// rule names the documented difference behind the implementations'
// decisions about attempt j, or "" if none. grpc-go sleeping into the
// deadline counts as grpc-go retrying: it would have, had the deadline
// allowed.
func rule(sc *diffScript, j int) string {
	a := sc.attempt(j)
	b, o := builtinDecision(sc, j), oursDecision(sc, j)
	if (b.retry || b.sleeps) == o.retry {
		return ""
	}
	oo, og := overflows(sc)
	switch {
	case oo != og && sc.Compress:
		return ruleCompressed
	case og && sc.Kind == diffUnary:
		return ruleUnaryBuffer
	case !o.retry && o.reason == retry.StopLocal && a.LimitText:
		return ruleServerLimit
	case a.Code == codes.DeadlineExceeded:
		return ruleTimeout
	case !o.retry && o.reason == retry.StopPermanent && a.Detail == quotaFailureDetail:
		return ruleQuota
	case j == 5 && sc.MaxAttempts > 5:
		return ruleCap
	}
	if o.retry {
		return ""
	}
	switch o.reason {
	case retry.StopPushback, retry.StopPushbackTooLong:
		if a.Detail == retryInfoLong || a.Detail == retryInfoNegative || a.Detail == retryInfoTwice {
			return ruleRetryInfo
		}
		if len(a.Pushback) == 1 {
			if ms, ok := atoiPushback(a.Pushback[0]); ok {
				if o.reason == retry.StopPushbackTooLong && time.Duration(ms)*time.Millisecond > diffMaxPushback {
					return ruleTooLong
				}
				if o.reason == retry.StopPushback {
					return ruleStrictPushback
				}
			}
		}
	case retry.StopDeadline:
		if b.sleeps {
			return ruleDeadline
		}
	}
	return ""
}

// failureView is what the caller sees of a call that ends with attempt
// j's pre-commit failure.
func failureView(sc *diffScript, j int) callerView {
	a := sc.attempt(j)
	tr := scriptedTrailer(a, j)
	tr.Set("content-type", "application/grpc") // a trailers-only response's one header frame
	if st := status.Convert(scriptedStatus(a, j)); len(st.Proto().GetDetails()) > 0 {
		b, err := proto.Marshal(st.Proto())
		if err != nil {
			panic(err)
		}
		tr.Set("grpc-status-details-bin", string(b))
	}
	return callerView{
		Code:     a.Code,
		Msg:      scriptedMessage(a, j),
		Trailer:  tr,
		Finished: []codes.Code{a.Code},
	}
}

// viewDiffs lists how two caller views differ.
func viewDiffs(x, y callerView) []string {
	var ds []string
	if x.Code != y.Code || x.Msg != y.Msg {
		ds = append(ds, fmt.Sprintf("status %v %q vs %v %q", x.Code, x.Msg, y.Code, y.Msg))
	}
	if !slices.Equal(x.Received, y.Received) {
		ds = append(ds, fmt.Sprintf("received %s vs %s", shortList(x.Received), shortList(y.Received)))
	}
	if !mdEqual(x.Header, y.Header) {
		ds = append(ds, fmt.Sprintf("header %s vs %s", mdString(x.Header), mdString(y.Header)))
	}
	if !mdEqual(x.HeaderAfter, y.HeaderAfter) {
		ds = append(ds, fmt.Sprintf("header after the end %s vs %s", mdString(x.HeaderAfter), mdString(y.HeaderAfter)))
	}
	if !mdEqual(x.Trailer, y.Trailer) {
		ds = append(ds, fmt.Sprintf("trailer %s vs %s", mdString(x.Trailer), mdString(y.Trailer)))
	}
	if x.SendErr != y.SendErr {
		ds = append(ds, fmt.Sprintf("send error %q vs %q", x.SendErr, y.SendErr))
	}
	if !slices.Equal(x.Finished, y.Finished) {
		ds = append(ds, fmt.Sprintf("OnFinish %v vs %v", x.Finished, y.Finished))
	}
	return ds
}

func mdEqual(x, y metadata.MD) bool {
	return maps.EqualFunc(x, y, func(a, b []string) bool { return slices.Equal(a, b) })
}

func serverDiffs(x, y []diffArrival) []string {
	var ds []string
	if len(x) != len(y) {
		ds = append(ds, fmt.Sprintf("%d vs %d attempts at the server", len(x), len(y)))
	}
	for i := range min(len(x), len(y)) {
		if !slices.Equal(x[i].Previous, y[i].Previous) || !slices.Equal(x[i].Received, y[i].Received) {
			ds = append(ds, fmt.Sprintf("attempt %d at the server: %v vs %v", i+1, &x[i], &y[i]))
		}
	}
	return ds
}

// compare checks the runs of sc by grpc-go (g) and by us (o). It returns
// the documented differences and normalizations that were needed, or an
// error saying what differs without a documented reason.
func compare(sc *diffScript, g, o observation) ([]string, error) {
	if len(g.Problems) > 0 || len(o.Problems) > 0 {
		return nil, fmt.Errorf("the server found problems with the script: grpc-go %q, ours %q", g.Problems, o.Problems)
	}
	var used []string
	for _, x := range []struct {
		im impl
		o  *observation
	}{{builtin, &g}, {ours, &o}} {
		u, err := normalize(sc, x.im, x.o)
		if err != nil {
			return nil, fmt.Errorf("%v: %v", x.im, err)
		}
		used = append(used, u...)
	}
	if err := checkOurs(sc, o); err != nil {
		return nil, err
	}
	for i, a := range g.Server {
		if err := checkPrevious(i+1, a); err != nil {
			return nil, fmt.Errorf("grpc-go: %v", err)
		}
	}
	for i, a := range o.Server {
		if err := checkPrevious(i+1, a); err != nil {
			return nil, fmt.Errorf("ours: %v", err)
		}
	}

	ds := append(viewDiffs(g.Caller, o.Caller), serverDiffs(g.Server, o.Server)...)
	if len(ds) == 0 {
		// Equal: the documented differences must not have applied to any
		// failed attempt on the way.
		for j := 1; j <= len(o.Server) && sc.SendLimit == 0; j++ {
			if !preCommit(sc, j) {
				continue
			}
			last := j == len(o.Server)
			if r := rule(sc, j); r != "" {
				if builtinDecision(sc, j).sleeps && g.endOutsideRecv && last {
					// grpc-go slept into the deadline inside Header() or
					// SendMsg; its caller then got the attempt's status,
					// as ours.
					if d := oursDecision(sc, j); o.RetryErr == nil || o.RetryErr.Reason != d.reason {
						return nil, fmt.Errorf("we stopped after attempt %d (%s) with %v, want Reason %v", j, r, o.Err, d.reason)
					}
					used = append(used, r)
					continue
				}
				return nil, fmt.Errorf("the runs are equal, but attempt %d should have shown a documented difference: %s", j, r)
			}
			if b := builtinDecision(sc, j); b.retry == last {
				return nil, fmt.Errorf("the runs are equal, but grpc-go should have %s after attempt %d", map[bool]string{true: "retried", false: "stopped"}[b.retry], j)
			}
		}
		return used, nil
	}

	j := min(len(g.Server), len(o.Server))
	if sd := serverDiffs(g.Server[:j], o.Server[:j]); len(sd) > 0 || j == 0 || sc.SendLimit > 0 || !preCommit(sc, j) {
		return nil, fmt.Errorf("grpc-go vs ours: %s", strings.Join(ds, "; "))
	}
	r := rule(sc, j)
	if r == "" {
		return nil, fmt.Errorf("grpc-go vs ours, with no documented difference at attempt %d: %s", j, strings.Join(ds, "; "))
	}
	b, d := builtinDecision(sc, j), oursDecision(sc, j)
	want := failureView(sc, j)
	switch {
	case len(o.Server) < len(g.Server):
		// We stopped at attempt j, grpc-go went on.
		if d.retry || !b.retry {
			return nil, fmt.Errorf("we stopped after attempt %d and grpc-go went on, which %q does not say", j, r)
		}
		if vd := viewDiffs(want, o.Caller); len(vd) > 0 {
			return nil, fmt.Errorf("we stopped after attempt %d (%s), but the caller did not see that attempt's failure: %s", j, r, strings.Join(vd, "; "))
		}
		if o.RetryErr == nil || o.RetryErr.Reason != d.reason {
			return nil, fmt.Errorf("we stopped after attempt %d (%s) with %v, want Reason %v", j, r, o.Err, d.reason)
		}
	case len(g.Server) < len(o.Server):
		// grpc-go stopped at attempt j, we went on.
		if !d.retry || b.retry {
			return nil, fmt.Errorf("grpc-go stopped after attempt %d and we went on, which %q does not say", j, r)
		}
		if vd := viewDiffs(want, g.Caller); len(vd) > 0 {
			return nil, fmt.Errorf("grpc-go stopped after attempt %d (%s), but its caller did not see that attempt's failure: %s", j, r, strings.Join(vd, "; "))
		}
	default:
		// Both stopped at attempt j, grpc-go after sleeping into the
		// deadline.
		if !b.sleeps || d.retry {
			return nil, fmt.Errorf("both stopped after attempt %d but differ (%s): %s", j, r, strings.Join(ds, "; "))
		}
		if vd := viewDiffs(want, o.Caller); len(vd) > 0 {
			return nil, fmt.Errorf("we stopped after attempt %d (%s), but the caller did not see that attempt's failure: %s", j, r, strings.Join(vd, "; "))
		}
		if o.RetryErr == nil || o.RetryErr.Reason != d.reason {
			return nil, fmt.Errorf("we stopped after attempt %d (%s) with %v, want Reason %v", j, r, o.Err, d.reason)
		}
		wantG := want
		wantG.Code, wantG.Msg, wantG.Finished = codes.DeadlineExceeded, "context deadline exceeded", []codes.Code{codes.DeadlineExceeded}
		if vd := viewDiffs(wantG, g.Caller); len(vd) > 0 {
			return nil, fmt.Errorf("grpc-go should have slept into the deadline after attempt %d (%s): %s", j, r, strings.Join(vd, "; "))
		}
	}
	return append(used, r), nil
}

// checkOurs checks what our error says against what the server saw.
func checkOurs(sc *diffScript, o observation) error {
	if o.Err == nil {
		return nil
	}
	if o.RetryErr == nil {
		if sc.SendLimit > 0 && o.Caller.SendErr != "" {
			return nil // SendMsg's own error ended the call (a unary call's is a *retry.Error)
		}
		return fmt.Errorf("ours: the call failed with %v (%T), not a *retry.Error", o.Err, o.Err)
	}
	if sc.SendLimit == 0 && o.RetryErr.Attempts != len(o.Server) {
		return fmt.Errorf("ours: *retry.Error says %d attempts, the server saw %d", o.RetryErr.Attempts, len(o.Server))
	}
	return nil
}

// checkPrevious checks attempt n's grpc-previous-rpc-attempts.
func checkPrevious(n int, a diffArrival) error {
	if n == 1 && len(a.Previous) == 0 || n > 1 && slices.Equal(a.Previous, []string{strconv.Itoa(n - 1)}) {
		return nil
	}
	return fmt.Errorf("attempt %d arrived with %s %q", n, retry.PreviousAttemptsHeader, a.Previous)
}
