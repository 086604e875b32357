// Package authz decides whether a user may perform a verb on a resource. The apiserver asks an
// Authorizer before every request; AllowAll is the default until RBAC plugs in.
package authz

import (
	"context"
)

// User is who makes a request.
type User struct {
	Name   string
	Groups []string
}

// Anonymous is the user of requests that carry no credentials.
func Anonymous() User {
	return User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
}

// Attributes describe one request for authorization, in Kubernetes' terms.
type Attributes struct {
	User        User
	Verb        string // get, list, watch, create, update, delete
	APIGroup    string
	Resource    string // "pods"
	SubResource string // "status", "binding"
	Namespace   string
	Name        string
}

// Decision is an authorizer's answer.
type Decision int

const (
	// NoOpinion lets the next authorizer decide; a chain that ends in NoOpinion denies.
	NoOpinion Decision = iota
	Allow
	Deny
)

// Authorizer decides one request; reason explains a denial to the user.
type Authorizer interface {
	Authorize(ctx context.Context, a Attributes) (d Decision, reason string, err error)
}

// AllowAll permits every request.
type AllowAll struct{}

func (AllowAll) Authorize(context.Context, Attributes) (Decision, string, error) {
	return Allow, "", nil
}

type userKey struct{}

// WithUser returns ctx carrying the requesting user.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the requesting user, or Anonymous.
func UserFrom(ctx context.Context) User {
	if u, ok := ctx.Value(userKey{}).(User); ok {
		return u
	}
	return Anonymous()
}
