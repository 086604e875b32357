package apiserver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

func regService(ns, name string, finalizers ...string) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns, Finalizers: finalizers},
		Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": name}}}
}

func regDeployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: &appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}}}}
}

// A grace period applies to pods running on a node only; anything else goes at once whatever
// the grace asked for (or, held by finalizers, is marked with period 0 and goes with its last
// finalizer). Before, a Service deleted with grace 30 kept its deletionTimestamp forever.
func TestGracePeriodOnlyForBoundRunningPods(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods, svcs, deps := env.Client, kind(t, "pods"), kind(t, "services"), kind(t, "deployments")
	thirty := int64(30)
	grace30 := client.DeleteOptions{GracePeriodSeconds: &thirty}
	for _, obj := range []scheme.Object{regService("default", "plain"), regService("default", "held", "example.com/hold"),
		regDeployment("default", "web"), newPod("unbound"), newPod("finished"), newPod("running")} {
		if _, err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"finished", "running"} {
		if err := c.Bind(ctx, "default", name, "node-1"); err != nil {
			t.Fatal(err)
		}
	}
	finished, _ := c.Get(ctx, pods, "default", "finished")
	finished.(*corev1.Pod).Status.Phase = "Succeeded"
	if _, err := c.UpdateStatus(ctx, finished); err != nil {
		t.Fatal(err)
	}

	for _, o := range []struct {
		k    *scheme.Kind
		name string
	}{{svcs, "plain"}, {deps, "web"}, {pods, "unbound"}, {pods, "finished"}} {
		if _, err := c.Delete(ctx, o.k, "default", o.name, grace30); err != nil {
			t.Fatalf("delete %s with grace 30: %v", o.name, err)
		}
		if got, err := c.Get(ctx, o.k, "default", o.name); !apierrors.IsNotFound(err) {
			t.Errorf("%s %s after a delete with grace 30: %v (deletionTimestamp %q); want it gone at once",
				o.k.Kind, o.name, err, got.GetMetadata().GetDeletionTimestamp())
		}
	}

	// Held by a finalizer: marked now, period 0, and the generation bumps.
	del, err := c.Delete(ctx, svcs, "default", "held", grace30)
	if err != nil {
		t.Fatal(err)
	}
	if md := del.GetMetadata(); md.DeletionTimestamp == "" || md.GetDeletionGracePeriodSeconds() != 0 || md.Generation != 2 {
		t.Errorf("held service: deletionTimestamp %q grace %d generation %d; want marked, 0, 2",
			md.DeletionTimestamp, md.GetDeletionGracePeriodSeconds(), md.Generation)
	}
	del.GetMetadata().Finalizers = nil
	if _, err := c.Update(ctx, del); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, svcs, "default", "held"); !apierrors.IsNotFound(err) {
		t.Errorf("held service after its last finalizer went: %v; want gone", err)
	}

	// A pod running on a node gets the grace period asked for; only a shorter one may follow.
	del, err = c.Delete(ctx, pods, "default", "running", grace30)
	if err != nil {
		t.Fatal(err)
	}
	if md := del.GetMetadata(); md.DeletionTimestamp == "" || md.GetDeletionGracePeriodSeconds() != 30 || md.Generation != 2 {
		t.Errorf("running pod: deletionTimestamp %q grace %d generation %d; want marked, 30, 2",
			md.DeletionTimestamp, md.GetDeletionGracePeriodSeconds(), md.Generation)
	}
	sixty := int64(60)
	if again, _ := c.Delete(ctx, pods, "default", "running", client.DeleteOptions{GracePeriodSeconds: &sixty}); again.GetMetadata().GetDeletionGracePeriodSeconds() != 30 {
		t.Errorf("a longer grace period lengthened a pending one to %d", again.GetMetadata().GetDeletionGracePeriodSeconds())
	}
}

// regNamespace creates namespace name with optional spec finalizers.
func regNamespace(t *testing.T, c client.Interface, name string, specFinalizers ...string) {
	t.Helper()
	ns := &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: name}, Spec: &corev1.NamespaceSpec{Finalizers: specFinalizers}}
	if _, err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

func regPodIn(ns, name string, finalizers ...string) *corev1.Pod {
	p := newPod(name)
	p.Metadata.Namespace = ns
	p.Metadata.Finalizers = finalizers
	return p
}

// A namespace is deleted the Kubernetes way: it turns Terminating, refuses new content (403
// NamespaceTerminating) and goes only once it holds nothing, its content going object by
// object under its own finalizers. Before, the namespace key alone went when its finalizers
// did (its pods came back with a namespace of the same name), an unfinalized namespace took
// its content with it in one transaction (finalizers of pods ignored), and creates in a
// terminating namespace were accepted.
func TestNamespaceDeletionNeverLosesOrOrphansContent(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods, svcs, nss := env.Client, kind(t, "pods"), kind(t, "services"), kind(t, "namespaces")
	regNamespace(t, c, "team")
	if _, err := c.Create(ctx, regPodIn("team", "held", "example.com/hold")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, regService("team", "web")); err != nil {
		t.Fatal(err)
	}

	del, err := c.Delete(ctx, nss, "", "team", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := del.(*corev1.Namespace)
	if ns.Metadata.DeletionTimestamp == "" || ns.GetStatus().GetPhase() != "Terminating" {
		t.Fatalf("deleted namespace: deletionTimestamp %q phase %q; want marked and Terminating", ns.Metadata.DeletionTimestamp, ns.GetStatus().GetPhase())
	}
	got, err := c.Get(ctx, nss, "", "team")
	if err != nil || got.(*corev1.Namespace).GetStatus().GetPhase() != "Terminating" {
		t.Fatalf("namespace after delete: %v %v; want it there, Terminating", err, got)
	}
	// Its content is untouched: the namespace does not delete it (a controller will).
	if p, err := c.Get(ctx, pods, "team", "held"); err != nil || p.GetMetadata().GetDeletionTimestamp() != "" {
		t.Errorf("pod of a terminating namespace: %v; want it there, not being deleted", err)
	}
	if _, err := c.Get(ctx, svcs, "team", "web"); err != nil {
		t.Errorf("service of a terminating namespace: %v", err)
	}

	// Nothing new may be created in it, over gRPC or REST.
	for _, obj := range []scheme.Object{regPodIn("team", "late"), regService("team", "late")} {
		_, err := c.Create(ctx, obj)
		if err == nil {
			t.Errorf("create %T in a terminating namespace accepted; want 403 NamespaceTerminating", obj)
			continue
		}
		se := apierrors.FromError(err)
		causes := se.Status.GetDetails().GetCauses()
		if se.Status.GetCode() != http.StatusForbidden || len(causes) != 1 || causes[0].Reason != "NamespaceTerminating" ||
			causes[0].Field != "metadata.namespace" {
			t.Errorf("create %T in a terminating namespace: %v (causes %v); want 403 with cause NamespaceTerminating", obj, err, causes)
		}
	}
	code, st := restCall(t, env, "POST", "/api/v1/namespaces/team/pods", podJSON("late", nil))
	if code != http.StatusForbidden || st["reason"] != "Forbidden" ||
		!strings.Contains(fmt.Sprint(dig(st, "details", "causes")), "NamespaceTerminating") {
		t.Errorf("REST create in a terminating namespace: %d %v; want 403 NamespaceTerminating", code, st)
	}
	// Deleting it again changes nothing while it holds objects.
	if again, err := c.Delete(ctx, nss, "", "team", client.DeleteOptions{}); err != nil ||
		again.GetMetadata().ResourceVersion != got.GetMetadata().ResourceVersion {
		t.Errorf("second delete of a non-empty namespace: %v; want the namespace unchanged", err)
	}

	// The content goes object by object, the pod only when its finalizer does; the last one
	// takes the namespace with it.
	if _, err := c.Delete(ctx, svcs, "team", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	heldPod, err := c.Delete(ctx, pods, "team", "held", client.DeleteOptions{})
	if err != nil || heldPod.GetMetadata().DeletionTimestamp == "" {
		t.Fatalf("delete of a pod with a finalizer: %v; want it marked", err)
	}
	if _, err := c.Get(ctx, nss, "", "team"); err != nil {
		t.Errorf("namespace gone while a pod held by its finalizer is in it: %v", err)
	}
	heldPod.GetMetadata().Finalizers = nil
	if _, err := c.Update(ctx, heldPod); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, pods, "team", "held"); !apierrors.IsNotFound(err) {
		t.Errorf("pod after its last finalizer went: %v", err)
	}
	if _, err := c.Get(ctx, nss, "", "team"); !apierrors.IsNotFound(err) {
		t.Errorf("empty terminating namespace after its last object went: %v; want gone", err)
	}

	// A namespace of the same name starts empty and takes new content.
	regNamespace(t, c, "team")
	for _, k := range []*scheme.Kind{pods, svcs} {
		if l, err := c.List(ctx, k, "team", client.ListOptions{}); err != nil || len(l.Items) != 0 {
			t.Errorf("%s in the recreated namespace: %v %d; want none", k.Resource, err, len(l.Items))
		}
	}
	if _, err := c.Create(ctx, regPodIn("team", "fresh")); err != nil {
		t.Errorf("create in the recreated namespace: %v", err)
	}
	resp, err := env.Etcd.Get(ctx, "/registry/pods/team/held")
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the old pod's key is still in etcd: %v", err)
	}
}

func TestNamespaceFinalizersAndEmptyNamespaces(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, nss := env.Client, kind(t, "namespaces")

	// An empty namespace without finalizers goes at once.
	regNamespace(t, c, "empty")
	if _, err := c.Delete(ctx, nss, "", "empty", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, nss, "", "empty"); !apierrors.IsNotFound(err) {
		t.Errorf("empty namespace after delete: %v; want gone", err)
	}

	// Spec finalizers hold it, Terminating, until they are removed; none may be added.
	regNamespace(t, c, "fin", "example.com/cleanup")
	if _, err := c.Delete(ctx, nss, "", "fin", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, nss, "", "fin")
	if err != nil || got.(*corev1.Namespace).GetStatus().GetPhase() != "Terminating" {
		t.Fatalf("namespace held by a spec finalizer: %v; want it Terminating", err)
	}
	more := proto.Clone(got).(*corev1.Namespace)
	more.Spec.Finalizers = append(more.Spec.Finalizers, "example.com/more")
	if _, err := c.Update(ctx, more); !apierrors.IsInvalid(err) {
		t.Errorf("adding a spec finalizer to a terminating namespace: %v; want Invalid", err)
	}
	// Its phase cannot be set back to Active while it is being deleted.
	active := proto.Clone(got).(*corev1.Namespace)
	active.Status.Phase = "Active"
	if _, err := c.UpdateStatus(ctx, active); !apierrors.IsInvalid(err) {
		t.Errorf("setting a terminating namespace Active: %v; want Invalid", err)
	}
	got.(*corev1.Namespace).Spec.Finalizers = nil
	if _, err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, nss, "", "fin"); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after its last spec finalizer went: %v; want gone", err)
	}

	// The system's namespaces cannot be deleted.
	for _, n := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if _, err := c.Delete(ctx, nss, "", n, client.DeleteOptions{}); apierrors.ReasonOf(err) != apierrors.ReasonForbidden {
			t.Errorf("delete %s: %v; want Forbidden", n, err)
		}
	}
	if ns, err := c.Get(ctx, nss, "", "default"); err != nil || ns.GetMetadata().DeletionTimestamp != "" {
		t.Errorf("default after a refused delete: %v", err)
	}
}

// DELETE honours its DeleteOptions: preconditions (409 and nothing deleted when they fail),
// the propagation policy (validated), the grace period in the body; a malformed body is 400.
// Before, the body was ignored and the object deleted.
func TestDeleteOptionsAreHonoured(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods := env.Client, kind(t, "pods")
	created, err := c.Create(ctx, newPod("target"))
	if err != nil {
		t.Fatal(err)
	}
	uid, rv := created.GetMetadata().Uid, created.GetMetadata().ResourceVersion
	rest := client.NewREST(env.HTTPURL, nil)

	for name, cl := range map[string]client.Interface{"grpc": c, "rest": rest} {
		for _, opts := range []client.DeleteOptions{{UID: "not-" + uid}, {ResourceVersion: "1"}, {UID: uid, ResourceVersion: "1"}} {
			if _, err := cl.Delete(ctx, pods, "default", "target", opts); !apierrors.IsConflict(err) ||
				!strings.Contains(err.Error(), "Precondition failed") {
				t.Errorf("%s: delete with failing precondition %+v: %v; want 409 Precondition failed", name, opts, err)
			}
		}
		if _, err := cl.Delete(ctx, pods, "default", "target", client.DeleteOptions{PropagationPolicy: "Sometimes"}); !apierrors.IsInvalid(err) {
			t.Errorf("%s: delete with propagationPolicy Sometimes: %v; want 422 invalid DeleteOptions", name, err)
		}
	}
	for _, body := range []string{`{"preconditions":{"uid":"other"}}`, `{"preconditions":{"resourceVersion":"2"}}`} {
		if code, st := restCall(t, env, "DELETE", podsPath+"/target", body); code != http.StatusConflict {
			t.Errorf("DELETE with body %s: %d %v; want 409", body, code, st)
		}
	}
	for _, body := range []string{`{"preconditions": [}`, `{"gracePeriodSeconds":"soon"}`} {
		if code, st := restCall(t, env, "DELETE", podsPath+"/target", body); code != http.StatusBadRequest || st["kind"] != "Status" {
			t.Errorf("DELETE with body %s: %d %v; want 400 Status", body, code, st)
		}
	}
	if code, st := restCall(t, env, "DELETE", podsPath+"/target", `{"propagationPolicy":"Sometimes"}`); code != http.StatusUnprocessableEntity {
		t.Errorf("DELETE with propagationPolicy Sometimes in the body: %d %v; want 422", code, st)
	}
	code, st := restCall(t, env, "DELETE", podsPath+"/target", `{"propagationPolicy":"Background","orphanDependents":true}`)
	if code != http.StatusUnprocessableEntity {
		t.Errorf("DELETE with propagationPolicy and orphanDependents: %d %v; want 422", code, st)
	}
	if got, err := c.Get(ctx, pods, "default", "target"); err != nil || got.GetMetadata().ResourceVersion != rv {
		t.Fatalf("refused deletes changed the pod: %v", err)
	}

	// A policy only a garbage collector can carry out, with none running: 503, nothing changes.
	for _, body := range []string{`{"propagationPolicy":"Foreground"}`, `{"propagationPolicy":"Orphan"}`, `{"orphanDependents":true}`} {
		if code, st := restCall(t, env, "DELETE", podsPath+"/target", body); code != http.StatusServiceUnavailable ||
			!strings.Contains(fmt.Sprint(st["message"]), "garbage collector") {
			t.Errorf("DELETE %s with no garbage collector: %d %v; want 503 naming the garbage collector", body, code, st)
		}
	}
	if got, err := c.Get(ctx, pods, "default", "target"); err != nil || got.GetMetadata().ResourceVersion != rv {
		t.Fatalf("refused deletes changed the pod: %v", err)
	}

	// Passing preconditions and a policy: deleted.
	code, st = restCall(t, env, "DELETE", podsPath+"/target",
		fmt.Sprintf(`{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","preconditions":{"uid":%q,"resourceVersion":%q}}`, uid, rv))
	if code != http.StatusOK {
		t.Fatalf("DELETE with passing preconditions: %d %v", code, st)
	}
	if _, err := c.Get(ctx, pods, "default", "target"); !apierrors.IsNotFound(err) {
		t.Errorf("pod after delete: %v", err)
	}

	// The body's grace period counts, and wins over the query's.
	if _, err := c.Create(ctx, newPod("graceful")); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ctx, "default", "graceful", "node-1"); err != nil {
		t.Fatal(err)
	}
	code, st = restCall(t, env, "DELETE", podsPath+"/graceful?gracePeriodSeconds=90", `{"gracePeriodSeconds":7}`)
	if code != http.StatusOK || dig(st, "metadata", "deletionGracePeriodSeconds") != float64(7) {
		t.Errorf("DELETE with grace 7 in the body: %d grace %v; want 7", code, dig(st, "metadata", "deletionGracePeriodSeconds"))
	}
}

// A binding names a valid node and the pod of its URL; anything else is refused and changes
// nothing. Before, binding to "Bad_Node!" was accepted (after which every update of the pod
// failed validation, so a pod with a finalizer could never lose it) and a body naming
// another pod bound the URL's pod.
func TestBindingIsValidated(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods := env.Client, kind(t, "pods")
	for _, p := range []*corev1.Pod{regPodIn("default", "held", "example.com/hold"), newPod("other")} {
		if _, err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range []string{"Bad_Node!", "", strings.Repeat("n", 254)} {
		if err := c.Bind(ctx, "default", "held", node); !apierrors.IsInvalid(err) {
			t.Errorf("bind to %q: %v; want 422 Invalid", node, err)
		}
	}
	const bindPath = podsPath + "/held/binding"
	for _, tc := range []struct{ body, why string }{
		{`{"metadata":{"name":"other"},"target":{"kind":"Node","name":"node-1"}}`, "another pod's name"},
		{`{"metadata":{"name":"held","namespace":"kube-system"},"target":{"kind":"Node","name":"node-1"}}`, "another namespace"},
		{`{"target":{"kind":"Node","name":"node-1"}}`, "no name"},
	} {
		if code, st := restCall(t, env, "POST", bindPath, tc.body); code != http.StatusBadRequest {
			t.Errorf("binding with %s: %d %v; want 400", tc.why, code, st)
		}
	}
	if code, st := restCall(t, env, "POST", bindPath, `{"metadata":{"name":"held"},"target":{"kind":"Pod","name":"node-1"}}`); code != http.StatusUnprocessableEntity {
		t.Errorf("binding to a Pod: %d %v; want 422", code, st)
	}
	for _, name := range []string{"held", "other"} {
		if p, _ := c.Get(ctx, pods, "default", name); p.(*corev1.Pod).GetSpec().GetNodeName() != "" {
			t.Errorf("%s bound by a refused binding to %q", name, p.(*corev1.Pod).Spec.NodeName)
		}
	}
	// The pod stays updatable: its finalizer can go and so can the pod.
	if _, err := c.Delete(ctx, pods, "default", "held", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get(ctx, pods, "default", "held")
	p.GetMetadata().Finalizers = nil
	if _, err := c.Update(ctx, p); err != nil {
		t.Fatalf("removing the finalizer: %v", err)
	}
	if _, err := c.Get(ctx, pods, "default", "held"); !apierrors.IsNotFound(err) {
		t.Errorf("held pod after its finalizer went: %v", err)
	}
}

// TestBindingAnnotationsReachThePod: as in Kubernetes, a binding's annotations are copied onto
// the pod it binds (kept beside the pod's own), and must be valid annotations.
func TestBindingAnnotationsReachThePod(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	p := newPod("noted")
	p.Metadata.Annotations = map[string]string{"own": "kept"}
	if _, err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	const bindPath = podsPath + "/noted/binding"
	if code, st := restCall(t, env, "POST", bindPath, `{"metadata":{"name":"noted","annotations":{"bad key!":"x"}},"target":{"kind":"Node","name":"node-1"}}`); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(st), "metadata.annotations") {
		t.Errorf("binding with an invalid annotation key: %d %v; want 422 naming metadata.annotations", code, st)
	}
	if code, st := restCall(t, env, "POST", bindPath, `{"metadata":{"name":"noted","annotations":{"example.com/scheduled-by":"me"}},"target":{"kind":"Node","name":"node-1"}}`); code != http.StatusCreated {
		t.Fatalf("binding: %d %v; want 201", code, st)
	}
	got, err := env.Client.Get(ctx, kind(t, "pods"), "default", "noted")
	if err != nil {
		t.Fatal(err)
	}
	if a := got.GetMetadata().GetAnnotations(); a["example.com/scheduled-by"] != "me" || a["own"] != "kept" || got.(*corev1.Pod).GetSpec().GetNodeName() != "node-1" {
		t.Errorf("bound pod: node %q, annotations %v; want node-1 with both annotations", got.(*corev1.Pod).GetSpec().GetNodeName(), a)
	}
}

// regTemplateStamper is a mutating admission plugin that copies an annotation into a
// Deployment's pod template: a spec change the client did not make.
type regTemplateStamper struct{}

func (regTemplateStamper) Admit(_ context.Context, a *admission.Attributes) error {
	d, ok := a.Object.(*appsv1.Deployment)
	if !ok || a.SubResource != "" {
		return nil
	}
	if v := d.GetMetadata().GetAnnotations()["example.com/stamp"]; v != "" && d.GetSpec().GetTemplate() != nil {
		if d.Spec.Template.Metadata == nil {
			d.Spec.Template.Metadata = &metav1.ObjectMeta{}
		}
		if d.Spec.Template.Metadata.Annotations == nil {
			d.Spec.Template.Metadata.Annotations = map[string]string{}
		}
		d.Spec.Template.Metadata.Annotations["example.com/stamp"] = v
	}
	return nil
}

// Metadata rules of an object's life: finalizers cannot be added once it is being deleted,
// and the generation counts the spec as stored, after mutating admission.
func TestFinalizersAndGenerationRules(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Configure: func(cfg *apiserver.Config) {
		cfg.Admission = &admission.Chain{Mutators: []admission.Mutator{regTemplateStamper{}}}
	}})
	ctx := context.Background()
	c, svcs := env.Client, kind(t, "services")
	if _, err := c.Create(ctx, regService("default", "held", "example.com/a")); err != nil {
		t.Fatal(err)
	}
	del, err := c.Delete(ctx, svcs, "default", "held", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	del.GetMetadata().Finalizers = append(del.GetMetadata().Finalizers, "example.com/b")
	_, err = c.Update(ctx, del)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no new finalizers can be added if the object is being deleted") {
		t.Errorf("adding a finalizer to an object being deleted: %v; want 422 no new finalizers", err)
	}
	if got, _ := c.Get(ctx, svcs, "default", "held"); len(got.GetMetadata().Finalizers) != 1 {
		t.Errorf("finalizers after the refused update: %v", got.GetMetadata().Finalizers)
	}

	dep, err := c.Create(ctx, regDeployment("default", "web"))
	if err != nil {
		t.Fatal(err)
	}
	stamped := proto.Clone(dep).(*appsv1.Deployment)
	stamped.Metadata.Annotations = map[string]string{"example.com/stamp": "v2"}
	got, err := c.Update(ctx, stamped)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.GetMetadata().Generation; g != 2 || got.(*appsv1.Deployment).Spec.Template.Metadata.Annotations["example.com/stamp"] != "v2" {
		t.Errorf("update whose spec change came from mutating admission: generation %d; want 2 with the stamped template", g)
	}
}

// Service names are DNS-1035 labels, a port and protocol are served once, and a PUT that
// leaves out the allocated clusterIP keeps it (as Kubernetes fills it from the stored object).
func TestServiceNamesPortsAndAllocatedFields(t *testing.T) {
	env := testenv.Start(t)
	const path = "/api/v1/namespaces/default/services"
	svcJSON := func(name, ports string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},"spec":{"selector":{"app":"web"},"ports":%s}}`, name, ports)
	}
	for _, tc := range []struct{ name, body, field, reason string }{
		{"digit first", svcJSON("1abc", `[{"port":80}]`), "metadata.name", "FieldValueInvalid"},
		{"same port twice", svcJSON("dup", `[{"name":"a","port":80},{"name":"b","port":80}]`), "spec.ports[1]", "FieldValueDuplicate"},
		{"same port and protocol twice", svcJSON("dup2", `[{"name":"a","port":53,"protocol":"UDP"},{"name":"b","port":53,"protocol":"UDP"}]`), "spec.ports[1]", "FieldValueDuplicate"},
	} {
		code, st := restCall(t, env, "POST", path, tc.body)
		causes := asSlice(dig(st, "details", "causes"))
		if code != http.StatusUnprocessableEntity || len(causes) == 0 ||
			dig(causes[0].(map[string]any), "field") != tc.field || dig(causes[0].(map[string]any), "reason") != tc.reason {
			t.Errorf("%s: %d %v; want 422 %s at %s", tc.name, code, st, tc.reason, tc.field)
		}
	}
	if code, st := restCall(t, env, "POST", path, svcJSON("dns", `[{"name":"tcp","port":53},{"name":"udp","port":53,"protocol":"UDP"}]`)); code != http.StatusCreated {
		t.Errorf("port 53 over TCP and UDP: %d %v; want 201", code, st)
	}

	withIP := strings.Replace(svcJSON("web", `[{"port":80}]`), `"spec":{`, `"spec":{"clusterIP":"10.96.0.10",`, 1)
	if code, st := restCall(t, env, "POST", path, withIP); code != http.StatusCreated {
		t.Fatalf("create with clusterIP: %d %v", code, st)
	}
	code, st := restCall(t, env, "PUT", path+"/web", strings.Replace(svcJSON("web", `[{"port":8080}]`), `"app":"web"`, `"app":"web2"`, 1))
	if code != http.StatusOK || dig(st, "spec", "clusterIP") != "10.96.0.10" || dig(st, "spec", "selector", "app") != "web2" {
		t.Errorf("PUT without clusterIP: %d clusterIP %v; want 200 keeping 10.96.0.10", code, dig(st, "spec", "clusterIP"))
	}
	code, st = restCall(t, env, "PUT", path+"/web", strings.Replace(withIP, "10.96.0.10", "10.96.0.11", 1))
	if code != http.StatusUnprocessableEntity {
		t.Errorf("PUT changing clusterIP: %d %v; want 422 (immutable)", code, st)
	}
}
