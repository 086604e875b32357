package fieldmanager

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON: %v", err)
	}
	return m
}

func req(manager string) Request {
	return Request{Manager: manager, APIVersion: "apps/v1", Time: "2025-01-01T00:00:00Z",
		Type: (&appsv1.Deployment{}).ProtoReflect().Descriptor()}
}

func entry(entries []Entry, manager, op string) *Entry {
	for i := range entries {
		if entries[i].Manager == manager && entries[i].Operation == op {
			return &entries[i]
		}
	}
	return nil
}

const applied = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
  "spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"web","image":"nginx:1","ports":[{"containerPort":80}]}]}}}}`

// TestObjectSet checks the FieldsV1 form: list items by key (a port's protocol defaulted),
// server-owned metadata left out.
func TestObjectSet(t *testing.T) {
	s := Scope(ObjectSet(obj(t, applied), req("a").Type), "")
	got := string(s.MarshalFieldsV1())
	want := `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestApplyConflictsAndForce(t *testing.T) {
	live := obj(t, applied)
	merged, entries, err := Apply(map[string]any{}, obj(t, applied), nil, req("ci"), false)
	if err != nil {
		t.Fatal(err)
	}
	live = merged
	// Someone scales the deployment: they own spec.replicas now.
	scaled := obj(t, applied)
	scaled["spec"].(map[string]any)["replicas"] = 5.0
	entries, changed := Update(live, scaled, entries, req("hpa"))
	if !changed || entry(entries, "hpa", OperationUpdate) == nil || entry(entries, "ci", OperationApply).Fields.Has(Path{"f:spec", "f:replicas"}) {
		t.Fatalf("after the update, entries %+v", entries)
	}
	live = scaled
	// Applying replicas: 2 again conflicts with the scaler.
	_, _, err = Apply(live, obj(t, applied), entries, req("ci"), false)
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Path.String() != ".spec.replicas" ||
		ce.Error() != `Apply failed with 1 conflict: conflict with "hpa" using apps/v1: .spec.replicas` {
		t.Fatalf("conflict: %v", err)
	}
	// Applying the live value co-owns it without conflict.
	same := obj(t, applied)
	same["spec"].(map[string]any)["replicas"] = 5.0
	if _, _, err := Apply(live, same, entries, req("ci"), false); err != nil {
		t.Errorf("applying the live value: %v", err)
	}
	// Forced, the applier takes the field over.
	out, forced, err := Apply(live, obj(t, applied), entries, req("ci"), true)
	if err != nil {
		t.Fatal(err)
	}
	if r := out["spec"].(map[string]any)["replicas"]; r != 2.0 {
		t.Errorf("forced apply: replicas %v", r)
	}
	if e := entry(forced, "hpa", OperationUpdate); e != nil {
		t.Errorf("the scaler still owns %s", e.Fields.MarshalFieldsV1())
	}
}

// TestApplyRemovesWhatIsNoLongerApplied: a field the manager applied before and no longer
// applies goes, unless another manager owns it.
func TestApplyRemovesWhatIsNoLongerApplied(t *testing.T) {
	withSidecar := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web","team":"x"}},
	  "spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1"},{"name":"side","image":"busybox"}]}}}}`
	live, entries, err := Apply(map[string]any{}, obj(t, withSidecar), nil, req("ci"), false)
	if err != nil {
		t.Fatal(err)
	}
	// Another manager also sets the team label.
	_, entries, err = Apply(live, obj(t, `{"metadata":{"labels":{"team":"x"}}}`), entries, req("ops"), false)
	if err != nil {
		t.Fatal(err)
	}
	smaller := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
	  "spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1"}]}}}}`
	out, _, err := Apply(live, obj(t, smaller), entries, req("ci"), false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	if strings.Contains(string(b), "side") {
		t.Errorf("the sidecar the manager no longer applies is still there: %s", b)
	}
	if !strings.Contains(string(b), `"team":"x"`) {
		t.Errorf("the label another manager owns went: %s", b)
	}
}

// TestUpdateUnchanged: an update that changes nothing leaves the entries as they are.
func TestUpdateUnchanged(t *testing.T) {
	o := obj(t, applied)
	entries, _ := Update(nil, o, nil, req("a"))
	if len(entries) != 1 || entries[0].Manager != "a" || entries[0].Operation != OperationUpdate {
		t.Fatalf("create: %+v", entries)
	}
	again, changed := Update(o, obj(t, applied), entries, req("b"))
	if changed || len(again) != 1 || again[0].Manager != "a" {
		t.Errorf("no-op update changed entries: %v %+v", changed, again)
	}
}
