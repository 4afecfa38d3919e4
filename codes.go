package retry

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"strconv"
)

// Class says how a failed attempt is treated. Every class but Permanent is
// retried (within the policy's attempts, deadline, pushback and budget).
type Class uint8

const (
	// Permanent failures are returned to the caller at once: retrying cannot
	// help (InvalidArgument, NotFound, PermissionDenied, ...), or the caller
	// itself gave up (its own Canceled or DeadlineExceeded).
	Permanent Class = iota
	// Transient failures are short outages: the server or the path to it was
	// briefly unavailable.
	Transient
	// RateLimited failures mean the server is overloaded or throttling this
	// client; retrying after a pause (ideally the server's pushback) helps.
	RateLimited
	// Timeout failures are an attempt that ran out of time (a per-attempt
	// timeout, or a deadline the server enforced) while the caller's own
	// deadline still had room.
	Timeout
)

// String returns the class name, e.g. "rate-limited".
func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	case RateLimited:
		return "rate-limited"
	case Timeout:
		return "timeout"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// CodeClass returns the default class of a status code. It is the table
// that Classify starts from:
//
//	Unavailable       → Transient
//	ResourceExhausted → RateLimited (Permanent when it is a spent quota, see Classify)
//	DeadlineExceeded  → Timeout
//	everything else   → Permanent (OK, Canceled, Unknown, InvalidArgument,
//	                    NotFound, AlreadyExists, PermissionDenied,
//	                    FailedPrecondition, Aborted, OutOfRange,
//	                    Unimplemented, Internal, DataLoss, Unauthenticated)
//
// Aborted and Internal are left Permanent on purpose: Aborted asks for a
// retry at a higher level (a whole read-modify-write), and Internal means a
// server bug that a retry usually repeats. A Policy.Classify can opt them in.
func CodeClass(c codes.Code) Class {
	switch c {
	case codes.Unavailable:
		return Transient
	case codes.ResourceExhausted:
		return RateLimited
	case codes.DeadlineExceeded:
		return Timeout
	}
	return Permanent
}

// Classify is the default classification of a failed attempt, given its
// status and the trailer metadata it ended with (which may be nil).
//
// It starts from CodeClass, with one refinement from AIP-194: a
// ResourceExhausted that carries a google.rpc.QuotaFailure detail and neither
// a grpc-retry-pushback-ms trailer nor a google.rpc.RetryInfo detail is a spent
// quota, not a rate limit, and is Permanent: quota retries can take hours and
// cost money.
//
// Classify does not know whether the caller's own context has ended; the
// interceptors check that separately and never retry the caller's own
// Canceled or DeadlineExceeded, whatever the class.
//
// To override classification, set Policy.Classify to a function that handles
// the cases you care about and delegates the rest to Classify.
func Classify(st *status.Status, trailer metadata.MD) Class {
	c := CodeClass(st.Code())
	if c == RateLimited && isSpentQuota(st, trailer) {
		return Permanent
	}
	return c
}

func isSpentQuota(st *status.Status, trailer metadata.MD) bool {
	if len(trailer[PushbackTrailer]) > 0 { // metadata keys are lower-case, as PushbackTrailer
		return false
	}
	quota := false
	for _, d := range st.Details() {
		switch d.(type) {
		case *errdetails.RetryInfo:
			return false
		case *errdetails.QuotaFailure:
			quota = true
		}
	}
	return quota
}
