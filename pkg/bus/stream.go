package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream that holds every change.
const StreamName = "SKIFF"

// WatermarkBucket and WatermarkKey hold the revision the stream has reached. A reader needs it
// only when every message has aged out of the stream, to tell whether its start point is
// still covered. The publisher writes it.
const (
	WatermarkBucket = "SKIFF_BUS"
	WatermarkKey    = "published"
)

// StreamConfig is what operators tune about the stream; docs/event-bus.md gives the
// consequences of each.
type StreamConfig struct {
	// MaxAge drops changes older than this. A consumer whose start point is older must relist.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; the oldest changes go first (-1: no bound).
	MaxBytes int64
	// Replicas of the stream in a NATS cluster (1 for a single server).
	Replicas int
	// Memory keeps the stream in memory only: faster, but a NATS restart loses it and every
	// consumer relists.
	Memory bool
	// MaxConsumers bounds concurrent consumers (every informer and node agent holds one).
	MaxConsumers int
	// Duplicates is the de-duplication window for message IDs.
	Duplicates time.Duration
}

// DefaultStreamConfig keeps a day of changes on disk, up to 8 GiB.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{MaxAge: 24 * time.Hour, MaxBytes: 8 << 30, Replicas: 1, MaxConsumers: 100_000,
		Duplicates: 2 * time.Minute}
}

// EnsureStream creates the stream, or updates its limits to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	sc := jetstream.StreamConfig{
		Name:         StreamName,
		Description:  "Skiff: every committed change of the API, in etcd revision order",
		Subjects:     []string{AllSubjects()},
		Retention:    jetstream.LimitsPolicy,
		MaxAge:       cfg.MaxAge,
		MaxBytes:     cfg.MaxBytes,
		MaxConsumers: cfg.MaxConsumers,
		Storage:      storage,
		Replicas:     max(cfg.Replicas, 1),
		Duplicates:   cfg.Duplicates,
		Discard:      jetstream.DiscardOld,
		AllowDirect:  true,
	}
	if sc.MaxAge > 0 && sc.Duplicates > sc.MaxAge {
		sc.Duplicates = sc.MaxAge // JetStream refuses a de-duplication window longer than retention
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}

// ErrTooOld means the requested start point is older than what the stream still holds: the
// reader must list again and start from the list's revision.
var ErrTooOld = errors.New("bus: start revision is older than the stream's retention")
