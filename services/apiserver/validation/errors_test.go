package validation

import (
	"errors"
	"testing"
)

func TestPath(t *testing.T) {
	cases := []struct {
		path *Path
		want string
	}{
		{NewPath("metadata", "name"), "metadata.name"},
		{NewPath("spec").Child("containers").Index(0).Child("image"), "spec.containers[0].image"},
		{NewPath("spec").Child("template", "spec", "containers").Index(2).Child("ports").Index(1).Child("containerPort"),
			"spec.template.spec.containers[2].ports[1].containerPort"},
		{NewPath("spec").Child("nodeSelector").Key("kubernetes.io/os"), "spec.nodeSelector[kubernetes.io/os]"},
		{NewPath("spec", "containers").Index(0).Child("resources", "limits").Key("memory"), "spec.containers[0].resources.limits[memory]"},
		{NewPath("subsets").Index(1), "subsets[1]"},
	}
	for _, c := range cases {
		if got := c.path.String(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	// Child must not share state with its parent: two children of one parent stay apart.
	spec := NewPath("spec")
	a, b := spec.Child("a"), spec.Child("b", "c")
	if a.String() != "spec.a" || b.String() != "spec.b.c" || spec.String() != "spec" {
		t.Errorf("paths leaked into each other: %s %s %s", a, b, spec)
	}
}

func TestFieldErrorMessages(t *testing.T) {
	limit := int64(-5)
	var nilPtr *int64
	cases := []struct {
		err  *FieldError
		want string
	}{
		{Required(NewPath("spec", "containers").Index(0).Child("image"), ""), "spec.containers[0].image: Required value"},
		{Required(NewPath("metadata", "name"), "name or generateName is required"),
			"metadata.name: Required value: name or generateName is required"},
		{Invalid(NewPath("metadata", "name"), "Bad_Name", "a lowercase RFC 1123 subdomain must be valid"),
			`metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must be valid`},
		{Invalid(NewPath("spec", "replicas"), int32(-1), "must be greater than or equal to 0"),
			"spec.replicas: Invalid value: -1: must be greater than or equal to 0"},
		{Invalid(NewPath("spec", "activeDeadlineSeconds"), &limit, "x"), "spec.activeDeadlineSeconds: Invalid value: -5: x"},
		{Invalid(NewPath("spec", "activeDeadlineSeconds"), nilPtr, "x"), "spec.activeDeadlineSeconds: Invalid value: null: x"},
		{Invalid(NewPath("spec", "template", "metadata", "labels"), map[string]string{"app": "web"}, "selector does not match template labels"),
			`spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: selector does not match template labels`},
		{Invalid(NewPath("metadata", "ownerReferences"), omitValue{}, "only one"), "metadata.ownerReferences: Invalid value: only one"},
		{NotSupported(NewPath("spec", "restartPolicy"), "Sometimes", restartPolicies),
			`spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"`},
		{Duplicate(NewPath("spec", "containers").Index(1).Child("name"), "web"), `spec.containers[1].name: Duplicate value: "web"`},
		{Forbidden(NewPath("metadata", "namespace"), "not allowed on this type"), "metadata.namespace: Forbidden: not allowed on this type"},
		{TooLong(NewPath("metadata", "annotations"), "", 262144), "metadata.annotations: Too long: may not be more than 262144 bytes"},
		{NotFound(NewPath("spec", "containers").Index(0).Child("volumeMounts").Index(0).Child("name"), "data"),
			`spec.containers[0].volumeMounts[0].name: Not found: "data"`},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestToAggregate(t *testing.T) {
	if err := (ErrorList{}).ToAggregate(); err != nil {
		t.Fatalf("empty list: got %v, want nil", err)
	}
	one := ErrorList{Required(NewPath("spec", "selector"), "")}
	if got := one.ToAggregate().Error(); got != "spec.selector: Required value" {
		t.Errorf("one error: got %q", got)
	}
	two := append(one, Invalid(NewPath("spec", "replicas"), int32(-1), "must be greater than or equal to 0"))
	err := two.ToAggregate()
	if got, want := err.Error(), "[spec.selector: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"; got != want {
		t.Errorf("two errors: got %q, want %q", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "spec.selector" || fe.Type != ErrorTypeRequired {
		t.Errorf("errors.As on the aggregate: got %+v", fe)
	}
}
