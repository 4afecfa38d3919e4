package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/seed4f82f287/retry"
)

// The simulation's backoff and attempts, for every retrying policy.
const (
	simMaxAttempts    = 4
	simInitialBackoff = 50 * time.Millisecond
	simMaxBackoff     = time.Second
)

// policySpec is one row of the storm tables: how each client's policy is
// built. newRun is called once per run and returns the builder called once
// per client, so a policy that shares a budget shares it within one run only.
type policySpec struct {
	name    string
	desc    string
	variant bool // a jitter variant: run in the outage scenario only, unless named
	newRun  func() func() retry.Policy
}

// simPolicy is the base of every retrying policy: 4 attempts, 50ms doubling
// to 1s.
func simPolicy(j retry.Jitter, b retry.Budget) retry.Policy {
	return retry.Policy{
		MaxAttempts:    simMaxAttempts,
		InitialBackoff: simInitialBackoff,
		MaxBackoff:     simMaxBackoff,
		Jitter:         j,
		Budget:         b,
	}
}

// perClient returns a newRun whose clients each get their own policy from f
// (and so, each their own budget).
func perClient(f func() retry.Policy) func() func() retry.Policy {
	return func() func() retry.Policy { return f }
}

func allPolicies() []policySpec {
	specs := []policySpec{
		{name: "none", desc: "MaxAttempts 1: no retry",
			newRun: perClient(func() retry.Policy { return retry.Policy{MaxAttempts: 1} })},
		{name: "nobudget", desc: "MaxAttempts 4, full jitter, Budget: retry.NoBudget",
			newRun: perClient(func() retry.Policy { return simPolicy(retry.FullJitter, retry.NoBudget) })},
		{name: "default", desc: fmt.Sprintf("MaxAttempts 4, full jitter, Budget: nil (the default CreditBudget per client: Ratio %g, PerSecond %g, Max %g, MaxDebt %g)",
			retry.DefaultCreditRatio, retry.DefaultCreditPerSecond, float64(retry.DefaultCreditMax), float64(retry.DefaultCreditMaxDebt)),
			newRun: perClient(func() retry.Policy { return simPolicy(retry.FullJitter, nil) })},
		{name: "default-shared", desc: "MaxAttempts 4, full jitter, one DefaultCreditBudget() shared by all the clients",
			newRun: func() func() retry.Policy {
				b := retry.DefaultCreditBudget()
				return func() retry.Policy { return simPolicy(retry.FullJitter, b) }
			}},
		{name: "throttle", desc: "MaxAttempts 4, full jitter, Budget: retry.NewThrottle(10, 0.1) per client (gRFC A6)",
			newRun: perClient(func() retry.Policy { return simPolicy(retry.FullJitter, retry.NewThrottle(10, 0.1)) })},
	}
	for _, j := range []retry.Jitter{retry.EqualJitter, retry.DecorrelatedJitter, retry.ProportionalJitter, retry.NoJitter} {
		specs = append(specs, policySpec{
			name:    "nobudget-" + j.String(),
			desc:    "as nobudget, Jitter: retry." + jitterName(j),
			variant: true,
			newRun:  perClient(func() retry.Policy { return simPolicy(j, retry.NoBudget) }),
		})
	}
	return specs
}

func jitterName(j retry.Jitter) string {
	switch j {
	case retry.FullJitter:
		return "FullJitter"
	case retry.ProportionalJitter:
		return "ProportionalJitter"
	case retry.EqualJitter:
		return "EqualJitter"
	case retry.DecorrelatedJitter:
		return "DecorrelatedJitter"
	case retry.NoJitter:
		return "NoJitter"
	}
	return j.String()
}

// selectPolicies parses -policy: "all" (every policy; jitter variants in
// the outage scenario only) or a comma list of names.
func selectPolicies(list string) (specs []policySpec, explicit bool, err error) {
	all := allPolicies()
	if list == "" || list == "all" {
		return all, false, nil
	}
	byName := make(map[string]policySpec, len(all))
	var names []string
	for _, s := range all {
		byName[s.name] = s
		names = append(names, s.name)
	}
	seen := make(map[string]bool)
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		s, ok := byName[n]
		if !ok {
			return nil, false, fmt.Errorf("unknown policy %q (have %s, or all)", n, strings.Join(names, ", "))
		}
		if !seen[n] {
			seen[n] = true
			specs = append(specs, s)
		}
	}
	return specs, true, nil
}
