package recipe

import (
	"errors"
	"fmt"
)

// The official service prefixes these errors by the step that failed, and clients see the prefixes (docs/api.md §1.1).
// The caller that answers clients (the node's planning) wraps ParsePath/ParsePXEPath errors with PathErrorPrefix
// and Plan errors with PlanErrorPrefix, e.g. fmt.Errorf("%s: %w", recipe.PathErrorPrefix, err), which keeps them
// *InvalidError for errors.As.
const (
	PathErrorPrefix = "error parsing profile from path"
	PlanErrorPrefix = "error enhancing profile from schematic"
)

// ErrSecureBootDisabled is wrapped (in an *InvalidError) when a secure-boot asset is asked for while the node has
// no secure-boot signing material.
var ErrSecureBootDisabled = errors.New("secure boot is disabled")

// InvalidError is a request the client got wrong: a bad path, or a schematic that cannot be built for the asked
// version or asset. HTTP layers answer 400 with Error() as the body.
type InvalidError struct {
	Err error
}

func (e *InvalidError) Error() string { return e.Err.Error() }

func (e *InvalidError) Unwrap() error { return e.Err }

// Invalid marks the error as the client's fault for the frontends' error classification.
func (e *InvalidError) Invalid() bool { return true }

// IsInvalid reports whether err (or anything it wraps) is an *InvalidError.
func IsInvalid(err error) bool {
	var invalid *InvalidError

	return errors.As(err, &invalid)
}

func invalidf(format string, args ...any) error {
	return &InvalidError{Err: fmt.Errorf(format, args...)}
}
