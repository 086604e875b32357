package record_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/record"
)

// Repeats of one event fold into one Event object whose count grows; a different message is
// a different Event. Events about cluster-scoped objects go to the default namespace.
func TestRecorderAggregatesRepeats(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := record.New(env.Client, "default-scheduler", "", nil)
	go rec.Run(ctx)

	pod := &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default", Uid: "u1"}}
	node := &corev1.Node{ApiVersion: "v1", Kind: "Node", Metadata: &metav1.ObjectMeta{Name: "n1", Uid: "u2"}}
	for range 3 {
		rec.Event(pod, record.Warning, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")
	}
	rec.Eventf(pod, record.Normal, "Scheduled", "Successfully assigned %s/%s to %s", "default", "web", "n1")
	rec.Event(node, record.Normal, "NodeReady", "node n1 is ready")

	events := scheme.Default()
	k, _ := events.ForName("events")
	var list *client.List
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		list, err = env.Client.List(ctx, k, "default", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int32{}
		for _, obj := range list.Items {
			counts[obj.(*corev1.Event).GetReason()] += obj.(*corev1.Event).GetCount()
		}
		if len(list.Items) == 3 && counts["FailedScheduling"] == 3 && counts["Scheduled"] == 1 && counts["NodeReady"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: %d objects, counts %v; want 3 objects, FailedScheduling count 3", len(list.Items), counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, obj := range list.Items {
		ev := obj.(*corev1.Event)
		if ev.GetSource().GetComponent() != "default-scheduler" || ev.GetFirstTimestamp() == "" || ev.GetLastTimestamp() == "" ||
			ev.GetInvolvedObject().GetName() == "" || ev.GetInvolvedObject().GetKind() == "" {
			t.Errorf("incomplete event %v", ev)
		}
	}
}
