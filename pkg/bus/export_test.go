package bus

import "github.com/nats-io/nats.go"

// WithLiveDrop makes a Live drop the live messages drop returns true for, as NATS drops
// messages for a slow or disconnected subscriber: the stream still holds them.
func WithLiveDrop(drop func(*nats.Msg) bool) LiveOption {
	return func(l *Live) { l.dropLive = drop }
}
