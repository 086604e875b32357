package kubelet_test

import (
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/nodetest"
)

func nodetestEventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	nodetest.Eventually(t, timeout, what, cond)
}
