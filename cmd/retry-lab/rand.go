package main

import "math/rand/v2"

// mix hashes its arguments into one 64-bit value (splitmix64 steps): the
// lab's seeds and per-attempt coin flips are all derived from -seed this
// way, so that they do not depend on the policy being measured, nor on the
// order in which runs are played.
func mix(xs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, x := range xs {
		h ^= x
		h += 0x9e3779b97f4a7c15
		h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
		h = (h ^ h>>27) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// unit returns a number in [0, 1) determined by xs.
func unit(xs ...uint64) float64 { return float64(mix(xs...)>>11) / (1 << 53) }

// newRand returns a generator seeded by xs.
func newRand(xs ...uint64) *rand.Rand {
	return rand.New(rand.NewPCG(mix(xs...), mix(append(xs, 1)...)))
}

// Salts that keep the random streams of the scenarios apart.
const (
	saltJitter uint64 = iota + 1
	saltFail
	saltChannel
	saltArrival
	saltSize
	saltTail
)
