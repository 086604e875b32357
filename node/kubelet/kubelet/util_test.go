package kubelet_test

import (
	"github.com/skiff-project/skiff/pkg/client"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/nodetest"
)

func nodetestEventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	nodetest.Eventually(t, timeout, what, cond)
}

func clientDelete(grace *int64) client.DeleteOptions {
	return client.DeleteOptions{GracePeriodSeconds: grace}
}
