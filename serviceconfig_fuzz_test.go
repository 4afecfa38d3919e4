package retry

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseServiceConfig feeds ParseServiceConfig untrusted documents. Its
// seed corpus (testdata/fuzz/FuzzParseServiceConfig) runs with every go
// test; go test -fuzz FuzzParseServiceConfig explores further.
//
// For every input: no panic; an error is a *ServiceConfigError whose
// message starts with its JSON path and states a rule; an accepted config
// gives valid routes, whose interceptors can be built, whose attempts
// respect gRFC A6's limit unless AllowMoreAttempts, and which Explain and
// String describe, the same way on every parse.
func FuzzParseServiceConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []ParseOptions{{}, {AllowMoreAttempts: true, Budget: NoBudget}} {
			sc, err := opts.Parse(data)
			if err != nil {
				var sce *ServiceConfigError
				if !errors.As(err, &sce) {
					t.Fatalf("error %v (%T) is not a *ServiceConfigError", err, err)
				}
				if sce.Rule == "" || !strings.HasPrefix(err.Error(), "retry: invalid service config: "+displayPath(sce.Path)+": ") {
					t.Fatalf("error %q does not name its path %q and a rule", err, sce.Path)
				}
				if sce.Path != "" && !(sce.Path[0] == '[' || strings.HasPrefix(strings.ToLower(sce.Path), "methodconfig") || strings.HasPrefix(strings.ToLower(sce.Path), "retrythrottling")) && !strings.Contains(sce.Rule, "invalid JSON") {
					t.Fatalf("error %q: path %q is not a path into the document", err, sce.Path)
				}
				if _, again := opts.Parse(data); again == nil || again.Error() != err.Error() {
					t.Fatalf("parsing twice gave %v, then %v", err, again)
				}
				continue
			}
			routes := sc.Routes()
			if err := routes.Validate(); err != nil {
				t.Fatalf("accepted config gives invalid routes: %v", err)
			}
			_ = RoutesDialOptions(routes)
			for i, r := range routes {
				p := r.Policy
				if p.MaxAttempts < 1 || !opts.AllowMoreAttempts && p.MaxAttempts > A6MaxAttempts {
					t.Fatalf("route %d: MaxAttempts %d", i, p.MaxAttempts)
				}
				if p.Timeout < 0 || p.InitialBackoff < 0 || p.MaxBackoff < p.InitialBackoff || p.Classify == nil {
					t.Fatalf("route %d: policy %+v", i, p)
				}
				for _, n := range r.Names {
					method := n
					switch kind, _ := parseRouteName(n); kind {
					case nameDefault:
						method = "/fuzz.Unnamed/Method"
					case nameService:
						method = n + "SomeMethod"
					}
					ex := sc.Explain(method)
					first, _, _ := strings.Cut(ex, "\n")
					if kind, _ := parseRouteName(n); kind == nameMethod && !strings.HasPrefix(first, method+": "+sc.routes[i].path+" applies (it names the method exactly)") {
						t.Fatalf("Explain(%q) = %q, want the exact entry %s", method, first, sc.routes[i].path)
					}
					if strings.Contains(first, "no entry matches") {
						t.Fatalf("Explain(%q) finds no entry, but route %d names %q", method, i, n)
					}
				}
			}
			for _, m := range []string{"/a.B/C", "C", "", "/"} {
				_ = sc.Explain(m)
				_ = routes.Explain(m)
			}
			for _, n := range sc.Notes() {
				if n.Text == "" {
					t.Fatalf("empty note at %q", n.Path)
				}
			}
			again, err := opts.Parse(data)
			if err != nil || again.String() != sc.String() {
				t.Fatalf("parsing twice gave different results:\n%s\n%v", sc, err)
			}
		}
	})
}
