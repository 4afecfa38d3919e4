package retry

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestZeroPolicyIsTheDefaultPolicy(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("Policy{}.Validate() = %v", err)
	}
	got, want := (Policy{}).withDefaults(), DefaultPolicy().withDefaults()
	if got.MaxAttempts != 4 || got.InitialBackoff != time.Second || got.MaxBackoff != 10*time.Second ||
		got.Multiplier != 2 || got.Jitter != FullJitter || got.MaxPushback != 30*time.Second ||
		got.PerAttemptTimeout != 0 || got.MaxReplayBytes != 256<<10 || got.Classify == nil {
		t.Fatalf("defaults: %+v", got)
	}
	got.Classify, want.Classify, got.clock, want.clock, got.rand, want.rand = nil, nil, nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Policy{} = %+v, DefaultPolicy() = %+v", got, want)
	}
}

func TestValidateNamesFieldAndRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     Policy
		field string
		rule  string
	}{
		{"negative attempts", Policy{MaxAttempts: -1}, "MaxAttempts", "at least 1"},
		{"negative initial", Policy{InitialBackoff: -time.Second}, "InitialBackoff", "negative"},
		{"negative max", Policy{MaxBackoff: -1}, "MaxBackoff", "negative"},
		{"negative attempt timeout", Policy{PerAttemptTimeout: -1}, "PerAttemptTimeout", "negative"},
		{"negative pushback cap", Policy{MaxPushback: -1}, "MaxPushback", "negative"},
		{"multiplier below 1", Policy{Multiplier: 0.5}, "Multiplier", "at least 1"},
		{"negative multiplier", Policy{Multiplier: -2}, "Multiplier", "at least 1"},
		{"NaN multiplier", Policy{Multiplier: math.NaN()}, "Multiplier", "finite"},
		{"Inf multiplier", Policy{Multiplier: math.Inf(1)}, "Multiplier", "finite"},
		{"max below initial", Policy{InitialBackoff: 2 * time.Second, MaxBackoff: time.Second}, "MaxBackoff", "at least InitialBackoff"},
		{"negative replay buffer", Policy{MaxReplayBytes: -1}, "MaxReplayBytes", "negative"},
		{"unknown jitter", Policy{Jitter: 42}, "Jitter", "must be one of"},
		{"method without slash", Policy{Methods: []string{"Generate"}}, "Methods[0]", "/package.Service/Method"},
		{"method without service", Policy{Methods: []string{"/a.B/M", "//"}}, "Methods[1]", "/package.Service/Method"},
		{"reserved idempotency header", Policy{IdempotencyHeader: "grpc-key"}, "IdempotencyHeader", "grpc-"},
		{"binary idempotency header", Policy{IdempotencyHeader: "key-bin"}, "IdempotencyHeader", "-bin"},
		{"idempotency header with space", Policy{IdempotencyHeader: "idem key"}, "IdempotencyHeader", "metadata key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Validate() = %v, want *PolicyError", err)
			}
			if pe.Field != tc.field || !strings.Contains(pe.Rule, tc.rule) {
				t.Fatalf("Validate() = %q (field %q), want field %q and rule containing %q", err, pe.Field, tc.field, tc.rule)
			}
			if !strings.Contains(err.Error(), "Policy."+tc.field) {
				t.Fatalf("message %q does not name the field", err)
			}
		})
	}
}

func TestValidAccepts(t *testing.T) {
	for _, p := range []Policy{
		{MaxAttempts: 1},
		{Multiplier: 1},
		{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		{Jitter: NoJitter},
		{Methods: []string{"/inference.v1.InferenceService/Generate", "/inference.v1.Other/"}},
		{IdempotencyHeader: "X-Idempotency-Key"},
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

func TestUnaryPanicsOnInvalidPolicy(t *testing.T) {
	defer func() {
		var pe *PolicyError
		if err, _ := recover().(error); !errors.As(err, &pe) || pe.Field != "Multiplier" {
			t.Fatalf("recovered %v, want *PolicyError for Multiplier", err)
		}
	}()
	Unary(Policy{Multiplier: 0.1})
	t.Fatal("Unary did not panic")
}

func TestMethodScope(t *testing.T) {
	c := mustCompile(Policy{Methods: []string{"/a.S/Generate", "/b.T/"}})
	for m, want := range map[string]bool{
		"/a.S/Generate": true,
		"/a.S/CallTool": false,
		"/b.T/Anything": true,
		"/b.Tx/M":       false,
	} {
		if got := c.inScope(m); got != want {
			t.Errorf("inScope(%q) = %v, want %v", m, got, want)
		}
	}
	if !mustCompile(Policy{}).inScope("/any.S/M") {
		t.Error("a policy without Methods must cover every method")
	}
	if got := mustCompile(Policy{IdempotencyHeader: "X-Key"}).idemHeader; got != "x-key" {
		t.Errorf("idemHeader = %q, want lower-case x-key", got)
	}
}

func TestZeroBackoffFieldsFollowTheSetOnes(t *testing.T) {
	for _, c := range []struct {
		name             string
		p                Policy
		initial, maxWait time.Duration
	}{
		{"neither", Policy{}, DefaultInitialBackoff, DefaultMaxBackoff},
		{"short max", Policy{MaxBackoff: 500 * time.Millisecond}, 500 * time.Millisecond, 500 * time.Millisecond},
		{"long max", Policy{MaxBackoff: time.Minute}, DefaultInitialBackoff, time.Minute},
		{"long initial", Policy{InitialBackoff: time.Minute}, time.Minute, time.Minute},
		{"short initial", Policy{InitialBackoff: 10 * time.Millisecond}, 10 * time.Millisecond, DefaultMaxBackoff},
	} {
		t.Run(c.name, func(t *testing.T) {
			cp, err := c.p.compile()
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if cp.InitialBackoff != c.initial || cp.MaxBackoff != c.maxWait {
				t.Fatalf("InitialBackoff %v, MaxBackoff %v; want %v, %v", cp.InitialBackoff, cp.MaxBackoff, c.initial, c.maxWait)
			}
		})
	}
}
