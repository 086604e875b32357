// Package admission is the apiserver's admission chain: mutating plugins run first and may
// change the object, then validating plugins may only refuse it. Built-in defaulting and
// validation run between the two, as in Kubernetes, so webhooks and policies plug in here
// without reshaping the server.
package admission

import (
	"context"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/authz"
)

// Operation is what a request does to an object.
type Operation string

const (
	Create  Operation = "CREATE"
	Update  Operation = "UPDATE"
	Delete  Operation = "DELETE"
	Connect Operation = "CONNECT"
)

// Attributes describe one admission request.
type Attributes struct {
	Kind        *scheme.Kind
	Namespace   string
	Name        string
	SubResource string // "", "status", "binding"
	Operation   Operation
	Object      scheme.Object // the new object (nil on delete); mutators may change it
	OldObject   scheme.Object // the stored object on update and delete
	User        authz.User
}

// Mutator may change a.Object or refuse the request with an error (an apierrors.StatusError
// gives the client a precise status).
type Mutator interface {
	Admit(ctx context.Context, a *Attributes) error
}

// Validator may refuse the request but not change it.
type Validator interface {
	Validate(ctx context.Context, a *Attributes) error
}

// Chain runs every mutator, then (after built-in validation) every validator.
type Chain struct {
	Mutators   []Mutator
	Validators []Validator
}

// Admit runs the mutating plugins in order, stopping at the first refusal.
func (c *Chain) Admit(ctx context.Context, a *Attributes) error {
	if c == nil {
		return nil
	}
	for _, m := range c.Mutators {
		if err := m.Admit(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// Validate runs the validating plugins in order, stopping at the first refusal.
func (c *Chain) Validate(ctx context.Context, a *Attributes) error {
	if c == nil {
		return nil
	}
	for _, v := range c.Validators {
		if err := v.Validate(ctx, a); err != nil {
			return err
		}
	}
	return nil
}
