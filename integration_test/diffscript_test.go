package integration_test

// Scripts of the differential test (differential_test.go): what the server
// does on each attempt of one call and what the caller does, drawn from a
// seeded generator so that any script can be rebuilt from its seed.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// diffKind is the shape of a scripted call.
type diffKind int

const (
	diffUnary        diffKind = iota // Generate
	diffServerStream                 // StreamGenerate
	diffClientStream                 // Ingest
	diffBidi                         // Chat
)

func (k diffKind) String() string {
	switch k {
	case diffUnary:
		return "unary"
	case diffServerStream:
		return "server-streaming"
	case diffClientStream:
		return "client-streaming"
	}
	return "bidi"
}

func (k diffKind) clientStreams() bool { return k == diffClientStream || k == diffBidi }
func (k diffKind) serverStreams() bool { return k == diffServerStream || k == diffBidi }

// detail is a status detail a failing attempt carries.
type detail int

const (
	noDetail           detail = iota
	retryInfoShort            // google.rpc.RetryInfo of 1ms
	retryInfoLong             // RetryInfo of 3s, above diffMaxPushback
	retryInfoNegative         // RetryInfo of -1s
	retryInfoTwice            // two RetryInfo details of 1ms
	quotaFailureDetail        // google.rpc.QuotaFailure: a spent quota
)

func (d detail) String() string {
	return [...]string{"", "RetryInfo(1ms)", "RetryInfo(3s)", "RetryInfo(-1s)", "RetryInfo(1ms)x2", "QuotaFailure"}[d]
}

// Numbers shared by the scripts, the policy and grpc-go's service config.
const (
	diffMaxPushback  = 2 * time.Second  // our Policy.MaxPushback
	diffDeadline     = 10 * time.Second // a script's deadline, never reached
	diffShortDelay   = time.Second      // the deadline of a script with a long pushback
	diffBigResponse  = 2000             // bytes of a big response message
	diffRecvLimit    = 1000             // grpc.MaxCallRecvMsgSize of a script that limits it
	diffSendLimit    = 100              // grpc.MaxCallSendMsgSize of a script that limits it
	diffLongPushback = "1500"           // within diffMaxPushback, beyond diffShortDelay
	diffHugePushback = "2500"           // beyond diffMaxPushback
)

// diffAttempt is what the server does on one attempt, in this order:
// read ReadFirst client messages (and the client's CloseSend, if that was
// all of them), send response headers, send Responses messages, read the
// rest of the client's messages if ReadRest, wait DelayMs, and end with
// Code, the trailer x-attempt (plus Pushback as grpc-retry-pushback-ms
// values) and Detail.
type diffAttempt struct {
	ReadFirst    int
	Header       bool
	Responses    int
	BigResponses bool
	ReadRest     bool
	DelayMs      int
	Code         codes.Code
	Pushback     []string
	Detail       detail
	// LimitText: the status message is the one gRPC's server library
	// sends when a message breaks its size limit.
	LimitText bool
}

func (a diffAttempt) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %d", a.ReadFirst)
	if a.Header {
		b.WriteString(", header")
	}
	if a.Responses > 0 {
		fmt.Fprintf(&b, ", %d response(s)", a.Responses)
		if a.BigResponses {
			b.WriteString(" (big)")
		}
	}
	if a.ReadRest {
		b.WriteString(", read the rest")
	}
	if a.DelayMs > 0 {
		fmt.Fprintf(&b, ", wait %dms", a.DelayMs)
	}
	fmt.Fprintf(&b, ", %v", a.Code)
	if a.Pushback != nil {
		fmt.Fprintf(&b, " pushback %q", a.Pushback)
	}
	if a.Detail != noDetail {
		fmt.Fprintf(&b, " %v", a.Detail)
	}
	if a.LimitText {
		b.WriteString(" (gRPC's size-limit text)")
	}
	return b.String()
}

// diffScript is one call: the caller's side and the server's side of every
// attempt. Attempt n runs Attempts[n-1]; there are MaxAttempts of them.
type diffScript struct {
	Seed        uint64
	Kind        diffKind
	MaxAttempts int
	Deadline    time.Duration
	ReplayLimit int  // grpc.MaxRetryRPCBufferSize
	Compress    bool // grpc.UseCompressor("gzip")
	RecvLimit   int  // grpc.MaxCallRecvMsgSize, 0 for gRPC's default
	SendLimit   int  // grpc.MaxCallSendMsgSize, 0 for gRPC's default
	Sends       []int
	CloseSend   bool
	CallContext bool // the caller calls Context() after sending
	CallHeader  bool // the caller calls Header() after sending
	HeaderFirst bool // the caller calls Header() before sending
	HeaderAfter bool // the caller calls Header() after the end
	// HeaderWhileReceiving: after sending, the caller calls Header() on
	// one goroutine while another receives to the end.
	HeaderWhileReceiving bool
	Attempts             []diffAttempt

	// What the caller's messages count against the replay buffer (see
	// replayCounts), worked out once.
	oursCount, grpcCount int
}

func (s *diffScript) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "script seed %d: %v, MaxAttempts %d, deadline %v, replay limit %d", s.Seed, s.Kind, s.MaxAttempts, s.Deadline, s.ReplayLimit)
	if s.Compress {
		b.WriteString(", gzip")
	}
	if s.RecvLimit > 0 {
		fmt.Fprintf(&b, ", recv limit %d", s.RecvLimit)
	}
	if s.SendLimit > 0 {
		fmt.Fprintf(&b, ", send limit %d", s.SendLimit)
	}
	b.WriteString("\n  caller: ")
	if s.HeaderFirst {
		b.WriteString("Header(), ")
	}
	fmt.Fprintf(&b, "send %d message(s) of sizes %v", len(s.Sends), s.Sends)
	if s.CloseSend {
		b.WriteString(", CloseSend")
	}
	if s.CallContext {
		b.WriteString(", Context()")
	}
	if s.CallHeader {
		b.WriteString(", Header()")
	}
	b.WriteString(", receive to the end")
	if s.HeaderWhileReceiving {
		b.WriteString(" while calling Header() on another goroutine")
	}
	if s.HeaderAfter {
		b.WriteString(", Header()")
	}
	for i, a := range s.Attempts {
		fmt.Fprintf(&b, "\n  attempt %d: %v", i+1, a)
	}
	return b.String()
}

// attempt returns the script of attempt n (from 1).
func (s *diffScript) attempt(n int) diffAttempt { return s.Attempts[n-1] }

// --- messages ---

// requestText is the caller's message i, padded to size bytes with a
// repeated byte (so that gzip shrinks it).
func requestText(i, size int) string {
	t := "m" + strconv.Itoa(i)
	if len(t) < size {
		t += strings.Repeat(".", size-len(t))
	}
	return t
}

// responseText is response i of attempt n.
func responseText(n, i int, big bool) string {
	t := fmt.Sprintf("a%dr%d", n, i)
	if big {
		t += strings.Repeat("z", diffBigResponse)
	}
	return t
}

// ingestChunks is the number an Ingest response of attempt n carries.
func ingestChunks(n int) int64 { return int64(100 * n) }

// --- replay-buffer accounting ---

// replayCounts returns what the caller's messages count against the replay
// buffer, summed: as we count them (serialized size plus the 5-byte
// prefix) and as grpc-go counts them (the payload it writes, compressed if
// the call compresses, plus the prefix).
func (s *diffScript) replayCounts() (ours, grpcGo int) {
	for i, size := range s.Sends {
		data, err := proto.Marshal(requestMessage(s.Kind, requestText(i, size)))
		if err != nil {
			panic(err)
		}
		ours += len(data) + 5
		if s.Compress && len(data) > 0 {
			var buf bytes.Buffer
			z := gzip.NewWriter(&buf)
			z.Write(data)
			z.Close()
			grpcGo += buf.Len() + 5
		} else {
			grpcGo += len(data) + 5
		}
	}
	return ours, grpcGo
}

// --- the generator ---

// genScript draws the script of seed.
func genScript(seed uint64) *diffScript {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	s := &diffScript{Seed: seed, Kind: diffKind(r.IntN(4)), Deadline: diffDeadline}
	s.MaxAttempts = 2 + r.IntN(4)
	if r.IntN(10) == 0 {
		s.MaxAttempts = 6 // above grpc-go's cap of 5
	}
	switch x := r.IntN(10); {
	case x < 5:
		s.ReplayLimit = 256 << 10
	case x < 9:
		s.ReplayLimit = 600 + r.IntN(1000)
	default:
		s.ReplayLimit = 100 + r.IntN(200)
	}
	s.Compress = r.IntN(6) == 0

	n := 1
	if s.Kind.clientStreams() {
		n = r.IntN(6)
	}
	big := r.IntN(4) == 0
	for range n {
		size := 1 + r.IntN(40)
		if big {
			size = 150 + r.IntN(500)
		}
		s.Sends = append(s.Sends, size)
	}
	switch s.Kind {
	case diffUnary, diffServerStream:
		s.CloseSend = true
	case diffClientStream:
		s.CloseSend = r.IntN(10) != 0
	case diffBidi:
		s.CloseSend = r.IntN(10) < 7
	}
	if s.Kind != diffUnary {
		s.CallHeader = r.IntN(10) < 3
		s.CallContext = r.IntN(14) == 0
		s.HeaderAfter = r.IntN(10) < 3
		s.HeaderFirst = s.Kind.clientStreams() && r.IntN(10) == 0
		if !s.CallHeader && !s.HeaderFirst && r.IntN(6) == 0 {
			s.HeaderWhileReceiving = true
		}
	}
	if r.IntN(12) == 0 && s.Kind != diffClientStream {
		s.RecvLimit = diffRecvLimit
	}
	if r.IntN(25) == 0 && n > 0 && !s.HeaderFirst {
		// The first message breaks the send limit: the call ends there.
		s.SendLimit = diffSendLimit
		s.Sends[0] = 2 * diffSendLimit
		s.Compress = false // the limit applies to the compressed size
	}

	for range s.MaxAttempts {
		s.Attempts = append(s.Attempts, genAttempt(r, s))
	}

	// A long pushback, which only a short deadline keeps from slowing
	// the run: grpc-go sleeps it until the deadline.
	if r.IntN(40) == 0 && !s.HeaderWhileReceiving {
		s.Deadline = diffShortDelay
		a := &s.Attempts[r.IntN(s.MaxAttempts)]
		*a = diffAttempt{ReadFirst: a.ReadFirst, Code: codes.Unavailable, Pushback: []string{diffLongPushback}}
		if r.IntN(2) == 0 {
			a.Pushback = []string{diffHugePushback}
		}
	}

	// Keep the outcome independent of timing.
	s.oursCount, s.grpcCount = s.replayCounts()
	mayOverflow := s.oursCount > s.ReplayLimit || s.grpcCount > s.ReplayLimit
	for i := range s.Attempts {
		a := &s.Attempts[i]
		if mayOverflow || s.CallContext {
			// The server acts only after the caller has sent everything,
			// so that the replay buffer's commit (or Context's) happens
			// before any failure, as it does for grpc-go, whose SendMsg
			// retries at once on a failed attempt.
			a.ReadFirst = n
		}
		if s.HeaderFirst {
			// The caller sends only once Header() has returned: the
			// server reads nothing before it sends headers (or ends).
			a.ReadFirst = 0
			if !a.Header && a.Responses == 0 {
				a.ReadRest = false
			}
		}
		if s.RecvLimit > 0 && a.BigResponses {
			// The caller ends the attempt at the big response: reading
			// after it would race with that.
			a.ReadRest = false
		}
	}
	return s
}

// genAttempt draws the server's script for one attempt of s.
func genAttempt(r *rand.Rand, s *diffScript) diffAttempt {
	n := len(s.Sends)
	var a diffAttempt
	switch x := r.IntN(100); {
	case x < 20:
		a.Code = codes.OK
	case x < 60:
		a.Code = codes.Unavailable
	case x < 78:
		a.Code = codes.ResourceExhausted
	case x < 83:
		a.Code = codes.DeadlineExceeded
	default:
		others := []codes.Code{codes.InvalidArgument, codes.Internal, codes.NotFound, codes.Aborted, codes.PermissionDenied, codes.Unknown}
		a.Code = others[r.IntN(len(others))]
	}
	a.ReadFirst = n
	if s.Kind.clientStreams() {
		a.ReadFirst = r.IntN(n + 1)
		a.ReadRest = r.IntN(2) == 0
	}
	a.Header = r.IntN(5) == 0
	switch s.Kind {
	case diffUnary:
		if a.Code == codes.OK {
			a.Responses = 1
		}
	case diffClientStream:
		if a.Code == codes.OK && r.IntN(20) != 0 || a.Code != codes.OK && r.IntN(6) == 0 {
			a.Responses = 1
			a.ReadRest = false
		}
	default:
		if r.IntN(4) == 0 {
			a.Responses = 1 + r.IntN(3)
		}
	}
	if a.Responses > 0 && s.Kind != diffClientStream {
		a.BigResponses = r.IntN(3) == 0
	}
	if r.IntN(5) == 0 {
		a.DelayMs = 1 + r.IntN(3)
	}
	if a.Code == codes.OK {
		return a
	}
	if a.Code == codes.ResourceExhausted && r.IntN(12) == 0 {
		a.LimitText = true
	}
	switch x := r.IntN(100); {
	case x < 55:
	case x < 70:
		a.Pushback = []string{strconv.Itoa(r.IntN(4))}
	case x < 74:
		a.Pushback = []string{"-1"}
	case x < 77:
		a.Pushback = []string{[]string{"abc", "", "1.5", " 1"}[r.IntN(4)]}
	case x < 82:
		a.Pushback = []string{"1", strconv.Itoa(r.IntN(3))}
	case x < 88:
		a.Pushback = []string{[]string{"+2", "-0", "+0"}[r.IntN(3)]}
	case x < 94:
		a.Pushback = []string{"007"}
	default:
		a.Pushback = []string{"99999999999999999999"}
	}
	switch x := r.IntN(100); {
	case x < 84:
	case x < 88:
		a.Detail = retryInfoShort
	case x < 91:
		a.Detail = retryInfoLong
	case x < 93:
		a.Detail = retryInfoNegative
	case x < 95:
		a.Detail = retryInfoTwice
	default:
		a.Detail = quotaFailureDetail
	}
	return a
}
