package main

import (
	"context"
	"errors"
)

// user manages local user accounts. (Being built.)
func (e *environment) user(ctx context.Context, args []string) error {
	return errors.New("user: not built yet")
}
