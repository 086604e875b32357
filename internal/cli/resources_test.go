package cli

import (
	"testing"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

func TestParseResourceArgs(t *testing.T) {
	s := scheme.Default()
	cmd := &cobra.Command{Use: "get"}
	for _, tc := range []struct {
		args             []string
		want             string // "kind:names;..."
		multiKind, named bool
	}{
		{[]string{"pods"}, "Pod:", false, false},
		{[]string{"deploy,svc", "web"}, "Deployment:web;Service:web", true, true},
		{[]string{"po,pods"}, "Pod:", false, false},
		{[]string{"deployment/web", "deploy/api", "svc/web"}, "Deployment:web,api;Service:web", true, true},
	} {
		ra, err := parseResourceArgs(cmd, s, tc.args)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		got := ""
		for i, tg := range ra.targets {
			if i > 0 {
				got += ";"
			}
			got += tg.kind.Kind + ":"
			for j, n := range tg.names {
				if j > 0 {
					got += ","
				}
				got += n
			}
		}
		if got != tc.want || ra.multiKind != tc.multiKind || ra.byName != tc.named {
			t.Errorf("%v: got %s multi=%t named=%t, want %s multi=%t named=%t", tc.args, got, ra.multiKind, ra.byName, tc.want, tc.multiKind, tc.named)
		}
	}
	for _, args := range [][]string{{}, {"widgets"}, {"pods", "pod/web"}, {"pod/"}, {","}} {
		if _, err := parseResourceArgs(cmd, s, args); err == nil {
			t.Errorf("%v: want an error", args)
		}
	}
}

func TestDeleteGrace(t *testing.T) {
	for _, tc := range []struct {
		d    deleteOptions
		want int64 // -1: unset
	}{
		{deleteOptions{gracePeriod: -1}, -1},
		{deleteOptions{gracePeriod: 5}, 5},
		{deleteOptions{gracePeriod: -1, now: true}, 1},
		{deleteOptions{gracePeriod: 0}, 1},
		{deleteOptions{gracePeriod: 0, force: true}, 0},
		{deleteOptions{gracePeriod: -1, force: true}, 0},
	} {
		got := int64(-1)
		if g := tc.d.grace(); g != nil {
			got = *g
		}
		if got != tc.want {
			t.Errorf("%+v: grace %d, want %d", tc.d, got, tc.want)
		}
	}
}
