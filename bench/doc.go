// Package bench holds the benchmarks that compare package retry with the
// alternatives a user would pick (no retry, grpc-go's built-in retry,
// go-grpc-middleware's retry interceptor) over bufconn, in the same run.
// The benchmarks live in _test.go files, so nothing here enters the import
// graph of package retry. Run them with bench/run.sh.
package bench
