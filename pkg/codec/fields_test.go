package codec

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// apiFields calls f for every field of every message of Skiff's API packages.
func apiFields(t *testing.T, f func(protoreflect.FieldDescriptor)) {
	t.Helper()
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			md := ms.Get(i)
			for j := 0; j < md.Fields().Len(); j++ {
				f(md.Fields().Get(j))
			}
			walk(md.Messages())
		}
	}
	n := 0
	for _, pkg := range []protoreflect.FullName{"skiff.meta.v1", "skiff.core.v1", "skiff.apps.v1"} {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			n++
			walk(fd.Messages())
			return true
		})
	}
	if n < 3 {
		t.Fatalf("found %d API proto files; are the API packages linked in?", n)
	}
}

// TestTimestampFields pins the fields decoded as RFC 3339 times: a new time field that the
// name rule misses, or a new field it catches by mistake, changes this list.
func TestTimestampFields(t *testing.T) {
	var got []string
	apiFields(t, func(fd protoreflect.FieldDescriptor) {
		if isTimestampField(fd) {
			got = append(got, string(fd.FullName()))
		}
	})
	slices.Sort(got)
	want := []string{
		"skiff.apps.v1.DeploymentCondition.last_transition_time",
		"skiff.apps.v1.DeploymentCondition.last_update_time",
		"skiff.apps.v1.ReplicaSetCondition.last_transition_time",
		"skiff.core.v1.ContainerStateRunning.started_at",
		"skiff.core.v1.ContainerStateTerminated.finished_at",
		"skiff.core.v1.ContainerStateTerminated.started_at",
		"skiff.core.v1.Event.event_time",
		"skiff.core.v1.Event.first_timestamp",
		"skiff.core.v1.Event.last_timestamp",
		"skiff.core.v1.NodeCondition.last_heartbeat_time",
		"skiff.core.v1.NodeCondition.last_transition_time",
		"skiff.core.v1.PodCondition.last_probe_time",
		"skiff.core.v1.PodCondition.last_transition_time",
		"skiff.core.v1.PodStatus.start_time",
		"skiff.core.v1.Taint.time_added",
		"skiff.meta.v1.ManagedFieldsEntry.time",
		"skiff.meta.v1.ObjectMeta.creation_timestamp",
		"skiff.meta.v1.ObjectMeta.deletion_timestamp",
	}
	if !slices.Equal(got, want) {
		t.Errorf("timestamp fields:\n got %q\nwant %q", got, want)
	}
}

func TestQuantityMaps(t *testing.T) {
	var got []string
	apiFields(t, func(fd protoreflect.FieldDescriptor) {
		if isQuantityMap(fd) {
			got = append(got, string(fd.FullName()))
		}
	})
	slices.Sort(got)
	want := []string{
		"skiff.core.v1.NodeStatus.allocatable",
		"skiff.core.v1.NodeStatus.capacity",
		"skiff.core.v1.ResourceRequirements.limits",
		"skiff.core.v1.ResourceRequirements.requests",
	}
	if !slices.Equal(got, want) {
		t.Errorf("quantity maps:\n got %q\nwant %q", got, want)
	}
}

func TestUnmarshalTimestamps(t *testing.T) {
	for _, ok := range []string{"2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123456Z", "2024-05-01T14:00:00+02:00", ""} {
		pod := &corev1.Pod{}
		if err := Unmarshal([]byte(`{"metadata":{"creationTimestamp":"`+ok+`"}}`), pod); err != nil ||
			pod.GetMetadata().GetCreationTimestamp() != ok {
			t.Errorf("creationTimestamp %q: %v, %v", ok, pod, err)
		}
	}
	bad := []struct{ body, path string }{
		{`{"metadata":{"creationTimestamp":"yesterday"}}`, "metadata.creationTimestamp"},
		{`{"metadata":{"deletionTimestamp":"2024-05-01"}}`, "metadata.deletionTimestamp"},
		{`{"metadata":{"creationTimestamp":"2024-05-01 12:00:00"}}`, "metadata.creationTimestamp"},
		{`{"metadata":{"creationTimestamp":"2024-13-01T12:00:00Z"}}`, "metadata.creationTimestamp"},
		{`{"status":{"startTime":"now"}}`, "status.startTime"},
		{`{"status":{"conditions":[{"type":"Ready","lastTransitionTime":"1714564800"}]}}`, "status.conditions[0].lastTransitionTime"},
		{`{"status":{"containerStatuses":[{"state":{"terminated":{"finishedAt":"later"}}}]}}`, "status.containerStatuses[0].state.terminated.finishedAt"},
		{`{"spec":{"template":{"metadata":{"creationTimestamp":"x"}}}}`, "spec.template.metadata.creationTimestamp"},
	}
	for _, tt := range bad {
		into := proto.Message(&corev1.Pod{})
		if strings.Contains(tt.path, "template") {
			into = &appsv1.Deployment{}
		}
		err := Unmarshal([]byte(tt.body), into)
		if err == nil || !strings.HasPrefix(err.Error(), tt.path+": cannot parse") || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("Unmarshal(%s) = %v, want an RFC 3339 error at %s", tt.body, err, tt.path)
		}
	}
	ev := &corev1.Event{}
	if err := Unmarshal([]byte(`{"eventTime":"2024-05-01T12:00:00.000001Z","firstTimestamp":"tomorrow"}`), ev); err == nil ||
		!strings.HasPrefix(err.Error(), "firstTimestamp:") {
		t.Errorf("event firstTimestamp: %v", err)
	}
	node := &corev1.Node{}
	if err := Unmarshal([]byte(`{"spec":{"taints":[{"key":"k","effect":"NoSchedule","timeAdded":"soon"}]}}`), node); err == nil ||
		!strings.HasPrefix(err.Error(), "spec.taints[0].timeAdded:") {
		t.Errorf("taint timeAdded: %v", err)
	}
}

func TestUnmarshalQuantityNumbers(t *testing.T) {
	pod := &corev1.Pod{}
	body := `{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":1,"memory":1.5e9},"requests":{"cpu":0.5,"memory":"64Mi","x":-2}}}]}}`
	if err := Unmarshal([]byte(body), pod); err != nil {
		t.Fatal(err)
	}
	res := pod.GetSpec().GetContainers()[0].GetResources()
	if res.GetLimits()["cpu"] != "1" || res.GetLimits()["memory"] != "1.5e9" || res.GetRequests()["cpu"] != "0.5" ||
		res.GetRequests()["memory"] != "64Mi" || res.GetRequests()["x"] != "-2" {
		t.Errorf("quantities decoded as %v", res)
	}
	node := &corev1.Node{}
	if err := Unmarshal([]byte(`{"status":{"capacity":{"cpu":4,"pods":110},"allocatable":{"cpu":3}}}`), node); err != nil ||
		node.GetStatus().GetCapacity()["cpu"] != "4" || node.GetStatus().GetCapacity()["pods"] != "110" || node.GetStatus().GetAllocatable()["cpu"] != "3" {
		t.Errorf("node quantities: %v %v", node.GetStatus(), err)
	}
	// Only quantities: a number is still no label value, and a quantity is no object.
	for _, bad := range []string{
		`{"metadata":{"labels":{"a":1}}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":true}}}]}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":{"v":1}}}}]}}`,
		`{"spec":{"nodeSelector":{"a":1}}}`,
	} {
		if err := Unmarshal([]byte(bad), &corev1.Pod{}); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}
