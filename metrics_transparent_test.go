package retry_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// h2Action is what the raw HTTP/2 server does with a stream.
type h2Action int

const (
	h2Refuse      h2Action = iota // RST_STREAM REFUSED_STREAM: never processed, so grpc-go retries it transparently
	h2Unavailable                 // a trailers-only Unavailable status
	h2OK                          // a GenerateResponse
)

// h2Server serves one client connection on a loopback listener, answering
// its n-th stream (1-based) as script(n) says, and returns the listener's
// address. It stops when the client closes the connection.
func h2Server(t *testing.T, script func(n int) h2Action) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		lis.Close()
		<-done
	})
	go func() {
		defer close(done)
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if err := serveH2(conn, script); err != nil && err != io.EOF {
			t.Errorf("raw HTTP/2 server: %v", err)
		}
	}()
	return lis.Addr().String()
}

func serveH2(conn net.Conn, script func(n int) h2Action) error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(conn, preface); err != nil {
		return err
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	headers := func(id uint32, end bool, fields ...string) error {
		hbuf.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: end, EndHeaders: true})
	}
	reply, err := proto.Marshal(&inferencev1.GenerateResponse{Text: "ok"})
	if err != nil {
		return err
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(reply)))
	msg = append(msg, reply...)
	actions := map[uint32]h2Action{}
	n := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if _, ok := err.(net.Error); ok {
				return io.EOF // the client went away
			}
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				err = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				err = fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return io.EOF
		case *http2.HeadersFrame:
			n++
			a := script(n)
			if a == h2Refuse {
				err = fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
				break
			}
			actions[f.StreamID] = a
		case *http2.DataFrame:
			a, ok := actions[f.StreamID]
			if !ok || !f.StreamEnded() {
				break // a refused stream's, or not the request's end yet
			}
			delete(actions, f.StreamID)
			switch a {
			case h2Unavailable:
				err = headers(f.StreamID, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "14", "grpc-message", "unavailable")
			case h2OK:
				if err = headers(f.StreamID, false, ":status", "200", "content-type", "application/grpc"); err == nil {
					if err = fr.WriteData(f.StreamID, false, msg); err == nil {
						err = headers(f.StreamID, true, "grpc-status", "0")
					}
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// TestMetricsTransparentRetries: grpc-go's transparent retries of refused
// streams are counted per call, over all of the call's attempts, apart from
// the call's own retries.
func TestMetricsTransparentRetries(t *testing.T) {
	withPolicy := func(m *meter) []grpc.DialOption { return retry.DialOptions(fastPolicy(m)) }
	withRoutes := func(m *meter) []grpc.DialOption {
		return retry.RoutesDialOptions(retry.Routes{
			{Names: []string{methodGenerate}, Policy: fastPolicy(m)},
			{Names: []string{""}, Policy: retry.Policy{MaxAttempts: 1}}, // no metrics
		})
	}
	for _, tc := range []struct {
		name   string
		dial   func(*meter) []grpc.DialOption
		script []h2Action
		want   func(target string) map[string][]point
	}{{
		name:   "one attempt",
		dial:   withPolicy,
		script: []h2Action{h2Refuse, h2OK},
		want: func(target string) map[string][]point {
			return map[string][]point{
				instTransparent: {{Method: generateLabel, Target: target, Count: 1, Sum: 1}},
			}
		},
	}, {
		name:   "routes",
		dial:   withRoutes,
		script: []h2Action{h2Refuse, h2OK},
		want: func(target string) map[string][]point {
			return map[string][]point{
				instTransparent: {{Method: generateLabel, Target: target, Count: 1, Sum: 1}},
			}
		},
	}, {
		name:   "retried",
		dial:   withPolicy,
		script: []h2Action{h2Refuse, h2Unavailable, h2Refuse, h2OK},
		want: func(target string) map[string][]point {
			return map[string][]point{
				instTransparent: {{Method: generateLabel, Target: target, Count: 1, Sum: 2}},
				instRetries:     {{Method: generateLabel, Target: target, Count: 1, Sum: 1}},
				instDelay:       {{Method: generateLabel, Target: target, Count: 1, Sum: -1}},
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMeter(t, retry.CountTransparentRetries())
			addr := h2Server(t, func(n int) h2Action {
				if n > len(tc.script) {
					return h2OK
				}
				return tc.script[n-1]
			})
			target := "passthrough:///" + addr
			cc, err := grpc.NewClient(target, append(tc.dial(m),
				grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			resp, err := inferencev1.NewInferenceServiceClient(cc).Generate(context.Background(), &inferencev1.GenerateRequest{})
			if err != nil || resp.GetText() != "ok" {
				t.Fatalf("Generate = %v, %v", resp, err)
			}
			checkPoints(t, m.collect(t), tc.want(target))
		})
	}
}

// TestMetricsTransparentRetriesNeedDialOptions: with Unary instead of
// DialOptions there is no stats handler, and the transparent retry is not
// counted (as documented), while the call still works.
func TestMetricsTransparentRetriesNeedDialOptions(t *testing.T) {
	m := newMeter(t, retry.CountTransparentRetries())
	addr := h2Server(t, func(n int) h2Action {
		if n == 1 {
			return h2Refuse
		}
		return h2OK
	})
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithChainUnaryInterceptor(retry.Unary(fastPolicy(m))),
		grpc.WithDisableRetry(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := inferencev1.NewInferenceServiceClient(cc).Generate(context.Background(), &inferencev1.GenerateRequest{}); err != nil {
		t.Fatal(err)
	}
	checkPoints(t, m.collect(t), nil)
}

// TestMetricsTransparentRetriesAreOptIn: without CountTransparentRetries,
// DialOptions installs no stats handler and records no transparent retry.
func TestMetricsTransparentRetriesAreOptIn(t *testing.T) {
	m := newMeter(t)
	addr := h2Server(t, func(n int) h2Action {
		if n == 1 {
			return h2Refuse
		}
		return h2OK
	})
	cc, err := grpc.NewClient("passthrough:///"+addr, append(retry.DialOptions(fastPolicy(m)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := inferencev1.NewInferenceServiceClient(cc).Generate(context.Background(), &inferencev1.GenerateRequest{}); err != nil {
		t.Fatal(err)
	}
	checkPoints(t, m.collect(t), nil)
}
