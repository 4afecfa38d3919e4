package integration_test

// The differential test: the same scripted server behaviour is played
// through grpc-go's built-in retry (service config retryPolicy) and through
// ours (retry.Unary and retry.Stream with the equivalent Policy), and what
// the caller saw and what the server saw are compared. See
// diffscript_test.go for the scripts, diffexpect_test.go for the
// documented differences.
//
// CI runs a few hundred scripts; run many more with
//
//	go test ./integration_test -run Differential -args -diff.scripts=20000
//
// and replay one script with -diff.seed=SEED -diff.scripts=1.

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	diffScripts  = flag.Int("diff.scripts", 300, "number of scripts the differential test runs")
	diffSeed     = flag.Uint64("diff.seed", 1, "seed of the differential test's first script (script i has seed diff.seed+i)")
	diffParallel = flag.Int("diff.parallel", 4, "scripts the differential test runs at once")
	diffVerbose  = flag.Bool("diff.v", false, "log every script of the differential test and its outcome")
)

func TestDifferentialAgainstBuiltinRetry(t *testing.T) {
	rig := startDiffRig(t, 2, 3, 4, 5, 6)
	var (
		mu       sync.Mutex
		failures []string
		counts   = map[string]int{}
		outcomes = map[string]int{}
		next     atomic.Int64
		wg       sync.WaitGroup
		slow     []slowScript
	)
	start := time.Now()
	for range max(*diffParallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*diffScripts) {
					return
				}
				sc := genScript(*diffSeed + uint64(i))
				t0 := time.Now()
				used, outcome, err := runDifferential(rig, sc)
				took := time.Since(t0)
				mu.Lock()
				slow = append(slow, slowScript{took, sc.Seed})
				if err != nil {
					failures = append(failures, fmt.Sprintf("%v\n%v\nreproduce: go test ./integration_test -run Differential -args -diff.seed=%d -diff.scripts=1", err, sc, sc.Seed))
				}
				for _, u := range used {
					counts[u]++
				}
				outcomes[outcome]++
				enough := len(failures) >= 5
				mu.Unlock()
				if *diffVerbose {
					t.Logf("%v\n  => %s %q %v", sc, outcome, used, err)
				}
				if enough {
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d scripts from seed %d in %v", min(int(next.Load()), *diffScripts), *diffSeed, time.Since(start).Round(time.Millisecond))
	slices.SortFunc(slow, func(a, b slowScript) int { return int(b.took - a.took) })
	t.Logf("slowest scripts: %v", slow[:min(len(slow), 8)])
	t.Logf("outcomes: %s", sortedCounts(outcomes))
	t.Logf("documented differences and normalizations met:\n  %s", sortedCounts(counts))
	for _, f := range failures {
		t.Errorf("%s", f)
	}
}

type slowScript struct {
	took time.Duration
	seed uint64
}

func (s slowScript) String() string {
	return fmt.Sprintf("%d: %v", s.seed, s.took.Round(time.Millisecond))
}

// runDifferential runs sc through both implementations and compares.
func runDifferential(rig *diffRig, sc *diffScript) (used []string, outcome string, err error) {
	g, err := rig.run(builtin, sc)
	if err != nil {
		return nil, "", fmt.Errorf("grpc-go run: %v", err)
	}
	o, err := rig.run(ours, sc)
	if err != nil {
		return nil, "", fmt.Errorf("our run: %v", err)
	}
	outcome = fmt.Sprintf("%v/%d attempts", o.Caller.Code, len(o.Server))
	used, err = compare(sc, g, o)
	if err != nil {
		return nil, outcome, fmt.Errorf("%v\n  grpc-go: %v\n           server %v\n  ours:    %v (%v)\n           server %v", err, g.Caller, g.Server, o.Caller, o.Err, o.Server)
	}
	return used, outcome, nil
}

func sortedCounts(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("\n  ")
		}
		fmt.Fprintf(&b, "%5d  %s", m[k], k)
	}
	return b.String()
}
