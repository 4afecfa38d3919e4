package retry

import (
	"math"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry/interceptor"
)

// PushbackTrailer is the trailer through which a server tells a client when
// to retry (gRFC A6): one non-negative decimal integer of milliseconds.
const PushbackTrailer = "grpc-retry-pushback-ms"

// PreviousAttemptsHeader is the request header that retries carry (gRFC
// A6): the number of attempts made before this one, absent on the first.
const PreviousAttemptsHeader = interceptor.PreviousAttemptsHeader

const retryInfoName = "google.rpc.RetryInfo"

// pushback is what a failed attempt's server said about retrying.
type pushback struct {
	present bool          // the server said something
	stop    bool          // "do not retry", or something unintelligible
	delay   time.Duration // meaningful when present && !stop
}

// serverPushback combines the grpc-retry-pushback-ms trailer and the
// google.rpc.RetryInfo status detail. If either says "do not retry" (or
// cannot be understood) the result is stop; if both give a delay, the longer
// one wins, since RetryInfo means "wait at least this long".
func serverPushback(st *status.Status, trailer metadata.MD) pushback {
	a := parsePushbackTrailer(trailer[PushbackTrailer]) // metadata keys are lower-case, as PushbackTrailer
	b := parseRetryInfo(st)
	switch {
	case a.stop || b.stop:
		return pushback{present: true, stop: true}
	case a.present && b.present:
		return pushback{present: true, delay: max(a.delay, b.delay)}
	case b.present:
		return b
	}
	return a
}

// parsePushbackTrailer reads the values of grpc-retry-pushback-ms:
//
//   - no value: no pushback;
//   - one value of ASCII digits only: wait that many milliseconds (values too
//     large for a time.Duration saturate to the longest one, which the
//     MaxPushback cap then refuses);
//   - anything else (a sign, spaces, a fraction, an empty value, or more than
//     one value): the server said "do not retry".
func parsePushbackTrailer(values []string) pushback {
	switch len(values) {
	case 0:
		return pushback{}
	case 1:
	default:
		return pushback{present: true, stop: true}
	}
	v := values[0]
	if v == "" {
		return pushback{present: true, stop: true}
	}
	const maxMillis = math.MaxInt64 / int64(time.Millisecond)
	var ms int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return pushback{present: true, stop: true}
		}
		if ms <= maxMillis {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > maxMillis {
		return pushback{present: true, delay: math.MaxInt64}
	}
	return pushback{present: true, delay: time.Duration(ms) * time.Millisecond}
}

// parseRetryInfo reads google.rpc.RetryInfo from the status details:
//
//   - no RetryInfo, or one without retry_delay: no pushback;
//   - one RetryInfo with a valid, non-negative retry_delay: wait that long
//     (saturating like the trailer);
//   - an undecodable RetryInfo, a negative or invalid delay, or more than one
//     RetryInfo: "do not retry".
func parseRetryInfo(st *status.Status) pushback {
	if st == nil || len(st.Details()) == 0 {
		return pushback{} // (Details allocates nothing for a status without details; Proto clones)
	}
	var found pushback
	seen := false
	for _, d := range st.Proto().GetDetails() {
		name := d.GetTypeUrl()
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		if name != retryInfoName {
			continue
		}
		if seen {
			return pushback{present: true, stop: true}
		}
		seen = true
		var ri errdetails.RetryInfo
		if err := proto.Unmarshal(d.GetValue(), &ri); err != nil {
			return pushback{present: true, stop: true}
		}
		rd := ri.GetRetryDelay()
		if rd == nil {
			continue
		}
		if rd.CheckValid() != nil || rd.GetSeconds() < 0 || rd.GetNanos() < 0 {
			return pushback{present: true, stop: true}
		}
		found = pushback{present: true, delay: saturatingDuration(rd.GetSeconds(), rd.GetNanos())}
	}
	return found
}

func saturatingDuration(seconds int64, nanos int32) time.Duration {
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	if seconds > maxSeconds {
		return math.MaxInt64
	}
	d := time.Duration(seconds) * time.Second
	if d > math.MaxInt64-time.Duration(nanos) {
		return math.MaxInt64
	}
	return d + time.Duration(nanos)
}
