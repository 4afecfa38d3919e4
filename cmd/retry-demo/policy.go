package main

import (
	"fmt"
	"go/format"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/seed4f82f287/retry"
)

// policySource returns p as a Go composite literal, retry.Policy{...}, with
// every field that p sets (every field that is not zero, so every field
// whose value differs from its default): pasted into a program, it makes
// the same policy. Function fields, which cannot be printed, are written as
// the expression that names[field] gives (e.g. the demo's hook). With
// multiline, one field per line, aligned as gofmt aligns them.
func policySource(p retry.Policy, names map[string]string, multiline bool) string {
	fields := setFields(reflect.ValueOf(p), names)
	if !multiline || len(fields) == 0 {
		return "retry.Policy{" + strings.Join(fields, ", ") + "}"
	}
	src := "package p\n\nvar _ = retry.Policy{\n" + strings.Join(fields, ",\n") + ",\n}\n"
	out, err := format.Source([]byte(src))
	if err != nil {
		return "retry.Policy{" + strings.Join(fields, ", ") + "}" // not Go: shown as is
	}
	_, lit, _ := strings.Cut(string(out), "var _ = ")
	return strings.TrimSpace(lit)
}

// setFields returns "Name: value" for every exported field of the struct v
// that is not zero.
func setFields(v reflect.Value, names map[string]string) []string {
	var out []string
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() || v.Field(i).IsZero() {
			continue
		}
		out = append(out, f.Name+": "+goValue(v.Field(i), names[f.Name]))
	}
	return out
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	jitterType   = reflect.TypeFor[retry.Jitter]()
)

// jitterNames are the names of the Jitter constants, by value.
var jitterNames = map[retry.Jitter]string{
	retry.FullJitter:         "retry.FullJitter",
	retry.ProportionalJitter: "retry.ProportionalJitter",
	retry.EqualJitter:        "retry.EqualJitter",
	retry.DecorrelatedJitter: "retry.DecorrelatedJitter",
	retry.NoJitter:           "retry.NoJitter",
}

// goValue returns a Go expression for v. name is used for a function,
// which has no other way of being written.
func goValue(v reflect.Value, name string) string {
	switch t := v.Type(); {
	case t == durationType:
		return durationSource(time.Duration(v.Int()))
	case t == jitterType:
		if s, ok := jitterNames[retry.Jitter(v.Uint())]; ok {
			return s
		}
		return fmt.Sprintf("retry.Jitter(%d)", v.Uint())
	}
	switch v.Kind() {
	case reflect.Func:
		if name != "" {
			return name
		}
		return "<" + v.Type().String() + ">"
	case reflect.Interface:
		if v.IsNil() {
			return "nil"
		}
		if b, ok := v.Interface().(retry.Budget); ok {
			return budgetSource(b, name)
		}
		return goValue(v.Elem(), name)
	case reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return "&" + goValue(v.Elem(), name)
	case reflect.Struct:
		return v.Type().String() + "{" + strings.Join(setFields(v, nil), ", ") + "}"
	case reflect.Slice:
		elems := make([]string, v.Len())
		for i := range elems {
			elems[i] = goValue(v.Index(i), "")
		}
		return v.Type().String() + "{" + strings.Join(elems, ", ") + "}"
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	s := fmt.Sprint(v.Interface())
	if v.Type().PkgPath() != "" { // a named type: write the conversion
		s = v.Type().String() + "(" + s + ")"
	}
	return s
}

// budgetSource writes a Budget: a value of the package, or the constructor
// call that makes an equal one, or name for one that cannot be written.
func budgetSource(b retry.Budget, name string) string {
	switch b := b.(type) {
	case *retry.CreditBudget:
		return "retry.NewCreditBudget(" + goValue(reflect.ValueOf(b.Config()), "") + ")"
	}
	if b == retry.NoBudget {
		return "retry.NoBudget"
	}
	if name != "" {
		return name
	}
	return "<" + fmt.Sprintf("%T", b) + ">"
}

// durationSource writes d as a constant expression of the time package,
// e.g. 300 * time.Millisecond.
func durationSource(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{
		{time.Hour, "time.Hour"},
		{time.Minute, "time.Minute"},
		{time.Second, "time.Second"},
		{time.Millisecond, "time.Millisecond"},
		{time.Microsecond, "time.Microsecond"},
	} {
		if d%u.d == 0 {
			if d == u.d {
				return u.name
			}
			return strconv.FormatInt(int64(d/u.d), 10) + " * " + u.name
		}
	}
	return "time.Duration(" + strconv.FormatInt(int64(d), 10) + ")"
}
