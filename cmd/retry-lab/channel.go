package main

import (
	"math/rand/v2"
	"time"
)

// Reconnect backoff of the modelled gRPC channel (grpc-go's defaults): the
// first retry of a lost connection after 1s, each next one 1.6 times
// later, each jittered by ±20%.
const (
	reconnectBase       = time.Second
	reconnectMultiplier = 1.6
	reconnectJitter     = 0.2
)

// channel is a client's connection across one server restart. It is ready
// until down, when the connection is lost; it tries to reconnect at once
// (which fails: the server is down), then after the reconnect backoff, and
// becomes ready at the first try at or after the server is back. A real
// channel also tries at once and then backs off, because the calls that
// keep arriving ask an idle channel to connect.
type channel struct {
	down, back time.Duration // not ready in [down, back)
}

// newChannel returns the channel of a server down for outage from down,
// drawing the reconnect jitter from rnd.
func newChannel(down, outage time.Duration, rnd *rand.Rand) *channel {
	t, b := down, float64(reconnectBase)
	for t < down+outage {
		t += time.Duration(b * (1 - reconnectJitter + 2*reconnectJitter*rnd.Float64()))
		b *= reconnectMultiplier
	}
	return &channel{down: down, back: t}
}

func (ch *channel) ready(now time.Duration) bool { return now < ch.down || now >= ch.back }

// readyAt returns when the channel is next ready, at or after now.
func (ch *channel) readyAt(now time.Duration) time.Duration {
	if ch.ready(now) {
		return now
	}
	return ch.back
}
