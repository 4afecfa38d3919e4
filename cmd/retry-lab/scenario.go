package main

// scenario is one table of the lab: a situation played once per policy and
// per variant (a column group: a load, a failure rate, ...).
type scenario struct {
	name   string   // for -scenario
	title  string   // the table's heading
	about  []string // what is modelled and measured, printed under the title
	header []string // column names
	// variants is the number of runs per policy; run plays one of them
	// and returns its result, which cells turns into the row of a policy
	// (rs[v] is variant v's result).
	variants int
	run      func(seed uint64, spec policySpec, v int) any
	cells    func(rs []any) []string
	// targets are the goals a budget is judged on (for -sweep).
	targets []target
	// rows, if set, are the scenario's own rows (policies that differ in
	// more than their budget: the hedging scenarios), played instead of
	// the -policy budgets.
	rows []policySpec
}

// rowsOf returns the rows of sc's table: its own, or specs.
func (sc scenario) rowsOf(specs []policySpec) []policySpec {
	if sc.rows != nil {
		return sc.rows
	}
	return specs
}

// target is a goal on one scenario's results.
type target struct {
	name  string
	check func(rs []any) (ok bool, got string)
}

// allScenarios returns every scenario, scenario E with model m.
func allScenarios(m metaModel) []scenario {
	return []scenario{burstScenario(false), burstScenario(true), outageScenario(), steadyScenario(false), steadyScenario(true),
		quietScenario(), metaScenario(m), restartScenario(), tailScenario(false), tailScenario(true),
		hedgeOutageScenario(false), hedgeOutageScenario(true)}
}
