package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/seam"
)

// The retry loop every scenario shares: 4 attempts, backoff 50ms doubling
// to 1s, full jitter.
const (
	labMaxAttempts    = 4
	labInitialBackoff = 50 * time.Millisecond
	labMaxBackoff     = time.Second
)

// labPolicy returns the policy every scenario starts from, with budget b.
func labPolicy(b retry.Budget) retry.Policy {
	return retry.Policy{
		MaxAttempts:    labMaxAttempts,
		InitialBackoff: labInitialBackoff,
		MaxBackoff:     labMaxBackoff,
		Jitter:         retry.FullJitter,
		Budget:         b,
	}
}

// policySpec is one row of the tables: the budget that each simulated
// client gets (a new one per client) and, in the hedging scenarios, how the
// row's policy differs from the scenario's.
type policySpec struct {
	name, desc string
	budget     func() retry.Budget // the package's budgets
	proto      func() seam.Budget  // or a budget prototyped in the lab
	tweak      func(*retry.Policy) // if set, changes the scenario's policy for this row
}

// decider compiles p, with spec's budget (a new one) and the given clock
// and random source, into the package's real decision code. It also
// returns the budget if it is a prototype (nil otherwise).
func (spec policySpec) decider(p retry.Policy, now func() time.Time, rnd func() float64) (interceptor.Decider, seam.Budget) {
	cfg := seam.Config{Now: now, Rand: rnd}
	if spec.tweak != nil {
		spec.tweak(&p)
	}
	if spec.proto != nil {
		cfg.Budget = spec.proto()
	} else {
		p.Budget = spec.budget()
	}
	d, err := seam.NewDecider(p, cfg)
	if err != nil {
		panic(fmt.Sprintf("retry-lab: policy %s: %v", spec.name, err))
	}
	return d, cfg.Budget
}

// standardPolicies are the rows printed by default.
func standardPolicies() []policySpec {
	return []policySpec{
		{name: "nobudget", desc: "retry.NoBudget",
			budget: func() retry.Budget { return retry.NoBudget }},
		{name: "throttle", desc: "retry.NewThrottle(10, 0.1): gRFC A6 retry throttling",
			budget: func() retry.Budget { return retry.NewThrottle(10, 0.1) }},
		{name: "ratio", desc: "the former default (0.1 retry per success, at most 5, plus 0.5/s): the lab's copy",
			proto: func() seam.Budget { return newRatioBudget() }},
		creditSpec("credit", retry.CreditBudgetConfig{}),
	}
}

// creditSpec is the row of a CreditBudget with cfg (zero fields: defaults).
func creditSpec(name string, cfg retry.CreditBudgetConfig) policySpec {
	full := retry.NewCreditBudget(cfg).Config()
	return policySpec{
		name: name,
		desc: fmt.Sprintf("retry.NewCreditBudget: Ratio %g, PerSecond %g, Max %g, MaxDebt %g",
			full.Ratio, full.PerSecond, full.Max, full.MaxDebt),
		budget: func() retry.Budget { return retry.NewCreditBudget(cfg) },
	}
}

// parseCredit parses "ratio,perSecond,max,maxDebt" into a credit budget row
// named after its values.
func parseCredit(s string) (policySpec, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return policySpec{}, fmt.Errorf("%q: want ratio,perSecond,max,maxDebt", s)
	}
	var v [4]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return policySpec{}, fmt.Errorf("%q: %v", s, err)
		}
		v[i] = f
	}
	cfg := creditConfig(v[0], v[1], v[2], v[3])
	if err := labPolicy(retry.NewCreditBudget(cfg)).Validate(); err != nil {
		return policySpec{}, err
	}
	return creditSpec(creditName(v[0], v[1], v[2], v[3]), cfg), nil
}

// creditConfig returns the config with exactly these values (a zero ratio,
// perSecond or maxDebt turns deposits, the floor or the debt off rather
// than defaulting).
func creditConfig(ratio, perSecond, maxBalance, maxDebt float64) retry.CreditBudgetConfig {
	cfg := retry.CreditBudgetConfig{
		NoDeposits: ratio == 0, NoFloor: perSecond == 0, NoDebt: maxDebt == 0, Max: maxBalance,
	}
	if !cfg.NoDeposits {
		cfg.Ratio = ratio
	}
	if !cfg.NoFloor {
		cfg.PerSecond = perSecond
	}
	if !cfg.NoDebt {
		cfg.MaxDebt = maxDebt
	}
	return cfg
}

func creditName(ratio, perSecond, maxBalance, maxDebt float64) string {
	return fmt.Sprintf("credit(%g,%g,%g,%g)", ratio, perSecond, maxBalance, maxDebt)
}

// protoPolicies are rows of the credit budget with other timeout rules,
// played by the lab's copy of it: the first is shown by default (it is the
// credit budget without its timeout rule, to show what the rule is for),
// the others only when named.
func protoPolicies() []policySpec {
	return []policySpec{
		protoSpec("credit-no-timeout-rule", retry.CreditBudgetConfig{}, timeoutsFree),
		protoSpec("credit+timeouts-always", retry.CreditBudgetConfig{}, timeoutsAlways),
		protoSpec("credit-copy", retry.CreditBudgetConfig{}, timeoutsInDebt),
	}
}

// protoSpec is the row of a creditProto with cfg and rule.
func protoSpec(name string, cfg retry.CreditBudgetConfig, rule timeoutRule) policySpec {
	full := retry.NewCreditBudget(cfg).Config()
	var desc string
	switch rule {
	case timeoutsFree:
		desc = ", without the timeout rule: a first attempt that times out is never charged"
	case timeoutsInDebt:
		desc = " (the lab's copy of it)"
	case timeoutsAlways:
		desc = ", every first attempt that times out charged (not only while in debt)"
	}
	return policySpec{
		name: name,
		desc: fmt.Sprintf("credit budget: Ratio %g, PerSecond %g, Max %g, MaxDebt %g%s",
			full.Ratio, full.PerSecond, full.Max, full.MaxDebt, desc),
		proto: func() seam.Budget { return newCreditProto(cfg, rule) },
	}
}

// allPolicies are the rows -policy can name.
func allPolicies() []policySpec { return append(standardPolicies(), protoPolicies()...) }

// defaultPolicies are the rows printed when -policy is all.
func defaultPolicies() []policySpec { return append(standardPolicies(), protoPolicies()[0]) }
