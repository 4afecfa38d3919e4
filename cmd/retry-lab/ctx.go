package main

import (
	"context"
	"time"
)

// callContext is a logical call's context in virtual time. Its Deadline is
// the call's virtual deadline; Done and Err stay nil, because a real
// context.WithDeadline would fire on the wall clock. The decision code
// compares Deadline with its (virtual) clock, so a call past its deadline
// is still recognised as the caller's own: the attempt loop cuts attempts
// at the deadline itself.
type callContext struct {
	deadline time.Time
	has      bool
	call     *call // the call it belongs to, for the hooks of a policy
}

var _ context.Context = (*callContext)(nil)

func (c *callContext) Deadline() (time.Time, bool) { return c.deadline, c.has }
func (*callContext) Done() <-chan struct{}         { return nil }
func (*callContext) Err() error                    { return nil }
func (*callContext) Value(any) any                 { return nil }
