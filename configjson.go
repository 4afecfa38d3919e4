package retry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// This file reads the JSON of a gRPC service config into an ordered tree,
// so that the parser can name every value by its JSON path, notice
// duplicate and unknown keys, and read numbers and durations exactly as
// they were written.

// jkind is the kind of a JSON value.
type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

func (k jkind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// jvalue is a JSON value. Objects keep their members in document order.
type jvalue struct {
	kind    jkind
	text    string // a string's value, or a number's literal
	boolean bool
	elems   []*jvalue
	members []jmember
}

type jmember struct {
	key string
	val *jvalue
}

// maxJSONDepth bounds the nesting of a service config document: far more
// than any real config needs, and enough to keep a hostile document from
// exhausting the stack.
const maxJSONDepth = 256

// decodeJSON reads data, one JSON value and nothing else, into a tree.
// Errors are *ServiceConfigError naming the path where reading stopped.
func decodeJSON(data []byte) (*jvalue, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ServiceConfigError{Rule: "is empty: a service config is a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	r := &jreader{dec: dec}
	v, err := r.value("", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ServiceConfigError{Rule: "unexpected data after the service config object, at byte " + strconv.FormatInt(dec.InputOffset(), 10)}
	}
	return v, nil
}

type jreader struct {
	dec *json.Decoder
}

func (r *jreader) syntax(path string, err error) error {
	msg := err.Error()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of the document"
	}
	return &ServiceConfigError{Path: path, Rule: "invalid JSON at byte " + strconv.FormatInt(r.dec.InputOffset(), 10) + ": " + strings.TrimPrefix(msg, "json: ")}
}

func (r *jreader) value(path string, depth int) (*jvalue, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.syntax(path, err)
	}
	return r.fromToken(tok, path, depth)
}

func (r *jreader) fromToken(tok json.Token, path string, depth int) (*jvalue, error) {
	switch t := tok.(type) {
	case nil:
		return &jvalue{kind: jNull}, nil
	case bool:
		return &jvalue{kind: jBool, boolean: t}, nil
	case json.Number:
		return &jvalue{kind: jNumber, text: string(t)}, nil
	case string:
		return &jvalue{kind: jString, text: t}, nil
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, &ServiceConfigError{Rule: "nested more than " + strconv.Itoa(maxJSONDepth) + " levels deep, at byte " + strconv.FormatInt(r.dec.InputOffset(), 10)}
		}
		if t == '[' {
			v := &jvalue{kind: jArray}
			for r.dec.More() {
				e, err := r.value(path+"["+strconv.Itoa(len(v.elems))+"]", depth+1)
				if err != nil {
					return nil, err
				}
				v.elems = append(v.elems, e)
			}
			if _, err := r.dec.Token(); err != nil { // ']'
				return nil, r.syntax(path, err)
			}
			return v, nil
		}
		v := &jvalue{kind: jObject}
		for r.dec.More() {
			kt, err := r.dec.Token()
			if err != nil {
				return nil, r.syntax(path, err)
			}
			key, _ := kt.(string) // the decoder only returns strings as keys
			m, err := r.value(joinPath(path, key), depth+1)
			if err != nil {
				return nil, err
			}
			v.members = append(v.members, jmember{key, m})
		}
		if _, err := r.dec.Token(); err != nil { // '}'
			return nil, r.syntax(path, err)
		}
		return v, nil
	}
	return nil, &ServiceConfigError{Path: path, Rule: "unexpected JSON token"}
}

// joinPath returns the path of member key of the object at path: key as
// written when it is a plain identifier, else quoted in brackets (and
// shortened if long).
func joinPath(path, key string) string {
	if len(key) > 64 {
		key = strings.ToValidUTF8(key[:61], "") + "..."
	}
	plain := key != ""
	for _, c := range key {
		if !(c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// displayPath is path for messages: the document itself has an empty path.
func displayPath(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

// snippet returns a short JSON rendering of v for messages.
func (v *jvalue) snippet() string {
	var s string
	switch v.kind {
	case jNull:
		s = "null"
	case jBool:
		s = strconv.FormatBool(v.boolean)
	case jNumber:
		s = v.text
	case jString:
		s = strconv.Quote(v.text)
	case jArray:
		s = "[...]"
	case jObject:
		s = "{...}"
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// integer returns v as an integer literal (no fraction, no exponent, as
// grpc-go's parser requires), and false if it is not one or is out of
// range.
func (v *jvalue) integer() (int64, bool) {
	if v.kind != jNumber || strings.ContainsAny(v.text, ".eE") {
		return 0, false
	}
	n, err := strconv.ParseInt(v.text, 10, 64)
	return n, err == nil
}

// number returns v as a finite float64, and false if it is not a number
// or is out of range.
func (v *jvalue) number() (float64, bool) {
	if v.kind != jNumber {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.text, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// maxProtoDurationSeconds is the largest google.protobuf.Duration, in
// seconds (10,000 years).
const maxProtoDurationSeconds = 315_576_000_000

// durationRule is the rule a JSON duration must follow.
const durationRule = `must be a duration in gRPC's JSON form: seconds with up to 9 fractional digits and the suffix "s", such as "0.1s" or "2s"`

// parseJSONDuration parses the JSON form of a google.protobuf.Duration as
// gRPC reads it: an optional "-", decimal seconds with up to 9 fractional
// digits (".1s" and "1.s" included, as grpc-go accepts them), and "s".
// Durations beyond time.Duration's range (about 292 years) saturate, as in
// grpc-go. The second result is false if s is not of that form.
func parseJSONDuration(s string) (time.Duration, bool) {
	body, ok := strings.CutSuffix(s, "s")
	if !ok {
		return 0, false
	}
	neg := strings.HasPrefix(body, "-")
	if neg {
		body = body[1:]
	}
	whole, frac, _ := strings.Cut(body, ".")
	if whole == "" && frac == "" || len(frac) > 9 || !allDigits(whole) || !allDigits(frac) {
		return 0, false
	}
	var sec int64
	for _, c := range whole {
		sec = sec*10 + int64(c-'0')
		if sec > maxProtoDurationSeconds {
			return 0, false
		}
	}
	var ns int64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			ns += int64(frac[i] - '0')
		}
	}
	var d time.Duration
	if sec >= math.MaxInt64/int64(time.Second) {
		d = math.MaxInt64
	} else {
		d = min(time.Duration(sec)*time.Second+time.Duration(ns), math.MaxInt64)
	}
	if neg {
		d = -d
	}
	return d, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// durationHint suggests the JSON form of a duration written another way
// ("100ms" → "0.1s"), or returns "".
func durationHint(s string) string {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f >= 0 && f < maxProtoDurationSeconds {
			return " (seconds need the suffix \"s\": " + strconv.Quote(strconv.FormatFloat(f, 'f', -1, 64)+"s") + ")"
		}
		return ""
	}
	if d < 0 {
		return ""
	}
	if d == 0 && strings.ContainsAny(s, "123456789") {
		return " (gRPC counts whole nanoseconds: the shortest duration is \"0.000000001s\")"
	}
	return " (write " + strconv.Quote(jsonSeconds(d)) + ")"
}

// jsonSeconds formats d in gRPC's JSON form, e.g. "0.1s".
func jsonSeconds(d time.Duration) string {
	s := strconv.FormatInt(int64(d/time.Second), 10)
	if ns := int64(d % time.Second); ns != 0 {
		s += strings.TrimRight("."+strconv.FormatInt(1e9+ns, 10)[1:], "0")
	}
	return s + "s"
}

// codeNames are the canonical names of the status codes, as gRPC's JSON
// uses them (google.rpc.Code), indexed by code.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// codeName returns the canonical name of c, e.g. "UNAVAILABLE".
func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// statusCode reads a status code written as a name in any case
// ("UNAVAILABLE", "unavailable") or as a number (14). It returns the rule
// broken, with a hint, if v is neither.
func statusCode(v *jvalue) (codes.Code, string) {
	const rule = `must be a status code name such as "UNAVAILABLE" (any case) or its number 0 to 16`
	switch v.kind {
	case jString:
		for i, n := range codeNames {
			if strings.EqualFold(v.text, n) {
				return codes.Code(i), ""
			}
		}
		squash := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "_", "")) }
		for i, n := range codeNames {
			if squash(v.text) == squash(n) || (i == int(codes.Canceled) && squash(v.text) == "CANCELED") {
				return 0, rule + " (did you mean " + strconv.Quote(n) + "?)"
			}
		}
		if n, err := strconv.Atoi(v.text); err == nil && n >= 0 && n < len(codeNames) {
			return 0, rule + " (a number is written without quotes: " + strconv.Itoa(n) + ", or as " + strconv.Quote(codeNames[n]) + ")"
		}
		return 0, rule
	case jNumber:
		if n, ok := v.integer(); ok && n >= 0 && n < int64(len(codeNames)) {
			return codes.Code(n), ""
		}
	}
	return 0, rule
}
