package apiserver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// regQuiet is a checkpoint of etcd and the event bus, to show that requests in between wrote
// and published nothing.
type regQuiet struct {
	env *testenv.Env
	js  jetstream.JetStream
	rev int64  // etcd's revision at the checkpoint
	seq uint64 // the stream's sequence of the checkpoint's own event
	n   int
}

// regCheckpoint writes a sentinel pod, waits for its event on the bus (so everything before it
// is published) and records etcd's revision and the stream sequence.
func regCheckpoint(t *testing.T, env *testenv.Env) *regQuiet {
	t.Helper()
	q := &regQuiet{env: env, js: env.JetStream(t)}
	q.seq = q.sentinel(t)
	q.rev = regEtcdRevision(t, env)
	return q
}

func (q *regQuiet) sentinel(t *testing.T) uint64 {
	t.Helper()
	q.n++
	name := fmt.Sprintf("sentinel-%d-%d", time.Now().UnixNano(), q.n)
	if _, err := q.env.Client.Create(context.Background(), newPod(name)); err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	return regBusSeq(t, q.js, kind(t, "pods"), "default", name)
}

// assertNothingSince fails if etcd's revision moved since the checkpoint or if the bus
// carries anything between the checkpoint's event and a new sentinel's (the publisher keeps
// etcd's order, so an event of anything written in between would sit there).
func (q *regQuiet) assertNothingSince(t *testing.T, what string) {
	t.Helper()
	if rev := regEtcdRevision(t, q.env); rev != q.rev {
		t.Errorf("%s: etcd revision moved from %d to %d: something was stored", what, q.rev, rev)
	}
	seq := q.sentinel(t)
	if seq != q.seq+1 {
		t.Errorf("%s: %d events published between two sentinels; want none", what, seq-q.seq-1)
	}
	q.seq, q.rev = seq, regEtcdRevision(t, q.env)
}

// regRawGRPC is a plain gRPC connection, for requests the client package does not make.
func regRawGRPC(t *testing.T, env *testenv.Env) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(env.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func regEtcdRevision(t *testing.T, env *testenv.Env) int64 {
	t.Helper()
	resp, err := env.Etcd.Get(context.Background(), "\x00", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// regBusSeq waits for the latest event of an object and returns its stream sequence.
func regBusSeq(t *testing.T, js jetstream.JetStream, k *scheme.Kind, ns, name string) uint64 {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := st.GetLastMsgForSubject(ctx, bus.ObjectSubject(k, ns, name))
		if err == nil {
			return msg.Sequence
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event of %s %s/%s on the bus after 10s: %v", k.Kind, ns, name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// regPaddedPod is a pod whose encoding (as the client sends it) takes at least size bytes,
// padded with environment variables as in the 12,000-variable pod.
func regPaddedPod(name string, size int) *corev1.Pod {
	pod := newPod(name)
	c := pod.Spec.Containers[0]
	value := strings.Repeat("x", 100)
	for {
		n, _ := storage.Encode(pod)
		if len(n) >= size {
			return pod
		}
		// Each variable takes about 114 bytes: add slightly less than what is missing.
		for i := 0; i <= (size-len(n))/120; i++ {
			c.Env = append(c.Env, &corev1.EnvVar{Name: fmt.Sprintf("VAR_%05d", len(c.Env)), Value: value})
		}
	}
}

// regPodStoredAs returns a pod the server stores in exactly size bytes: it asks the server
// with dry-run creates (which answer with the object as it would be stored) and adjusts the
// padding.
func regPodStoredAs(t *testing.T, c client.Interface, name string, size int, finalizers ...string) *corev1.Pod {
	t.Helper()
	// One large variable rather than many: the stored object includes its managed fields,
	// which name every variable, so padding with many would grow them with the padding.
	pod := newPod(name)
	pod.Metadata.Finalizers = finalizers
	// The padding starts long enough that adjusting it never changes the width of a length
	// prefix (which would move the size by more than asked).
	pad := &corev1.EnvVar{Name: "PAD", Value: strings.Repeat("p", size-3000)}
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, pad)
	for range 10 {
		got, err := c.Create(context.Background(), proto.Clone(pod).(*corev1.Pod), client.DryRunAll)
		if err != nil {
			t.Fatalf("dry-run create of a %d-byte pod: %v", size, err)
		}
		stored, _ := storage.Encode(got)
		if len(stored) == size {
			return pod
		}
		pad.Value = strings.Repeat("p", len(pad.Value)+size-len(stored))
	}
	t.Fatalf("could not size a pod to %d stored bytes", size)
	return nil
}

func regIsTooLarge(err error) bool {
	se := apierrors.FromError(err)
	return se != nil && se.Status.GetCode() == http.StatusRequestEntityTooLarge &&
		se.Status.GetReason() == apierrors.ReasonRequestEntityTooLarge
}

// The object size limit is one number, limits.MaxObjectBytes of stored protobuf, for every
// write: above it the answer is 413 RequestEntityTooLarge and nothing is stored or published.
// Before, a 2 MB pod answered 500 (etcd's own limit) and a 1.37 MB pod was stored and jammed
// the bus.
func TestObjectSizeLimitOnEveryWrite(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods := env.Client, kind(t, "pods")
	q := regCheckpoint(t, env)

	// The two pods, over gRPC and over REST.
	for _, size := range []int{1_370_000, 2_000_000} {
		name := fmt.Sprintf("big-%d", size)
		_, err := c.Create(ctx, regPaddedPod(name, size))
		if !regIsTooLarge(err) || status.Code(err) != codes.ResourceExhausted {
			t.Errorf("gRPC create of a %d-byte pod: %v (gRPC code %v); want 413 RequestEntityTooLarge, ResourceExhausted", size, err, status.Code(err))
		} else if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(limits.MaxObjectBytes)) {
			t.Errorf("413 message %q does not name the limit", msg)
		}
		body, err := codec.Marshal(regPaddedPod(name, size))
		if err != nil {
			t.Fatal(err)
		}
		code, st := restCall(t, env, "POST", podsPath, string(body))
		if code != http.StatusRequestEntityTooLarge || st["reason"] != apierrors.ReasonRequestEntityTooLarge || st["kind"] != "Status" {
			t.Errorf("REST create of a %d-byte pod (%d bytes of JSON): %d %v; want 413 RequestEntityTooLarge", size, len(body), code, st["reason"])
		}
		if _, err := c.Get(ctx, pods, "default", name); !apierrors.IsNotFound(err) {
			t.Errorf("refused %d-byte pod: get = %v; want NotFound", size, err)
		}
	}
	q.assertNothingSince(t, "refused large creates")

	// The limit itself is allowed: the number is the limit, not an approximation of it.
	if _, err := c.Create(ctx, regPodStoredAs(t, c, "at-limit", limits.MaxObjectBytes)); err != nil {
		t.Fatalf("a pod of exactly MaxObjectBytes: %v", err)
	}
	over := regPodStoredAs(t, c, "one-over", limits.MaxObjectBytes-1)
	over.Spec.Containers[0].Env[len(over.Spec.Containers[0].Env)-1].Value += "xx"
	if _, err := c.Create(ctx, over); !regIsTooLarge(err) {
		t.Errorf("a pod one byte above the limit: %v; want 413", err)
	}

	// Writes that grow a stored object past the limit: a bind (nodeName and a condition), a
	// delete that marks an object held by a finalizer, an update and a status update.
	nearBind := regPodStoredAs(t, c, "near-bind", limits.MaxObjectBytes-10)
	nearDel := regPodStoredAs(t, c, "near-del", limits.MaxObjectBytes-10, "example.com/hold")
	for _, p := range []*corev1.Pod{nearBind, nearDel} {
		if _, err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	q = regCheckpoint(t, env)
	if err := c.Bind(ctx, "default", "near-bind", "node-1"); !regIsTooLarge(err) {
		t.Errorf("bind growing the pod past the limit: %v; want 413", err)
	}
	if _, err := c.Delete(ctx, pods, "default", "near-del", client.DeleteOptions{}); !regIsTooLarge(err) {
		t.Errorf("delete marking the pod past the limit: %v; want 413", err)
	}
	cur, err := c.Get(ctx, pods, "default", "near-bind")
	if err != nil {
		t.Fatal(err)
	}
	grown := proto.Clone(cur).(*corev1.Pod)
	grown.Metadata.Labels = map[string]string{"grown": strings.Repeat("a", 60)}
	if _, err := c.Update(ctx, grown); !regIsTooLarge(err) {
		t.Errorf("update growing the pod past the limit: %v; want 413", err)
	}
	grown = proto.Clone(cur).(*corev1.Pod)
	grown.Status.Message = strings.Repeat("m", 100)
	if _, err := c.UpdateStatus(ctx, grown); !regIsTooLarge(err) {
		t.Errorf("status update growing the pod past the limit: %v; want 413", err)
	}
	q.assertNothingSince(t, "refused growing writes")
	got, _ := c.Get(ctx, pods, "default", "near-bind")
	if !proto.Equal(got, cur) {
		t.Errorf("near-bind changed by refused writes")
	}
	if got, _ := c.Get(ctx, pods, "default", "near-del"); got.GetMetadata().GetDeletionTimestamp() != "" {
		t.Errorf("near-del marked for deletion by a refused delete")
	}
}

// regRefuser is a validating admission plugin that refuses objects labelled refuse=yes: a dry
// run must run admission too.
type regRefuser struct{}

func (regRefuser) Validate(_ context.Context, a *admission.Attributes) error {
	if a.Object != nil && a.Object.GetMetadata().GetLabels()["refuse"] == "yes" {
		return apierrors.NewForbidden(a.Kind.Group, a.Kind.Resource, a.Name, "refused by the test's admission plugin")
	}
	return nil
}

// dryRun=All runs every step of a write except the write: defaulting, admission, validation
// and the storage checks, and answers what Kubernetes answers. Before, it was ignored and the
// create, update or delete really happened.
func TestDryRunWritesNothing(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Configure: func(cfg *apiserver.Config) {
		cfg.Admission = &admission.Chain{Validators: []admission.Validator{regRefuser{}}}
	}})
	ctx := context.Background()
	pods, svcs, nss := kind(t, "pods"), kind(t, "services"), kind(t, "namespaces")
	rest := client.NewREST(env.HTTPURL, nil)
	for _, p := range []*corev1.Pod{newPod("bound"), newPod("unbound")} {
		if _, err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.Bind(ctx, "default", "bound", "node-1"); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{Port: 80}}}}
	if _, err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Create(ctx, &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "team"}}); err != nil {
		t.Fatal(err)
	}
	stored := map[string]scheme.Object{}
	for _, ref := range []struct {
		k        *scheme.Kind
		ns, name string
	}{{pods, "default", "bound"}, {pods, "default", "unbound"}, {svcs, "default", "web"}, {nss, "", "team"}} {
		obj, err := env.Client.Get(ctx, ref.k, ref.ns, ref.name)
		if err != nil {
			t.Fatal(err)
		}
		stored[ref.name] = obj
	}

	for name, c := range map[string]client.Interface{"grpc": env.Client, "rest": rest} {
		t.Run(name, func(t *testing.T) {
			q := regCheckpoint(t, env)

			// Create: the object as it would be stored, with generated name, uid and
			// timestamp, and no resourceVersion (nothing was stored).
			p := newPod("")
			p.Metadata.GenerateName = "dry-"
			got, err := c.Create(ctx, p, client.DryRunAll)
			if err != nil {
				t.Fatalf("dry-run create: %v", err)
			}
			md := got.GetMetadata()
			if !strings.HasPrefix(md.Name, "dry-") || len(md.Name) != len("dry-")+5 || md.Uid == "" || md.CreationTimestamp == "" ||
				md.ResourceVersion != "" || got.(*corev1.Pod).Spec.RestartPolicy != "Always" || got.(*corev1.Pod).Status.Phase != "Pending" {
				t.Errorf("dry-run create answered %v; want the defaulted object with generated name, uid, timestamp and no resourceVersion", md)
			}
			if _, err := c.Get(ctx, pods, "default", md.Name); !apierrors.IsNotFound(err) {
				t.Errorf("dry-run create stored %s: %v", md.Name, err)
			}
			// Admission and validation still refuse.
			refused := newPod("refused")
			refused.Metadata.Labels = map[string]string{"refuse": "yes"}
			if _, err := c.Create(ctx, refused, client.DryRunAll); apierrors.ReasonOf(err) != apierrors.ReasonForbidden {
				t.Errorf("dry-run create refused by admission: %v; want Forbidden", err)
			}
			if _, err := c.Create(ctx, newPod("Bad_Name"), client.DryRunAll); !apierrors.IsInvalid(err) {
				t.Errorf("dry-run create of an invalid pod: %v; want Invalid", err)
			}
			// ...as do the storage checks.
			if _, err := c.Create(ctx, newPod("bound"), client.DryRunAll); !apierrors.IsAlreadyExists(err) {
				t.Errorf("dry-run create of an existing pod: %v; want AlreadyExists", err)
			}
			missing := newPod("x")
			missing.Metadata.Namespace = "nowhere"
			if _, err := c.Create(ctx, missing, client.DryRunAll); !apierrors.IsNotFound(err) {
				t.Errorf("dry-run create in a missing namespace: %v; want NotFound", err)
			}

			// Update and status update: the object as it would be, at the stored version.
			upd := proto.Clone(stored["web"]).(*corev1.Service)
			upd.Metadata.Labels = map[string]string{"tier": "front"}
			upd.Spec.Ports[0].Port = 8080
			got, err = c.Update(ctx, upd, client.DryRunAll)
			if err != nil {
				t.Fatalf("dry-run update: %v", err)
			}
			if got.(*corev1.Service).Spec.Ports[0].Port != 8080 || got.GetMetadata().Generation != 2 ||
				got.GetMetadata().ResourceVersion != stored["web"].GetMetadata().ResourceVersion {
				t.Errorf("dry-run update answered port %d generation %d rv %s; want 8080, 2 and the stored version",
					got.(*corev1.Service).Spec.Ports[0].Port, got.GetMetadata().Generation, got.GetMetadata().ResourceVersion)
			}
			upd.Metadata.Labels = map[string]string{"refuse": "yes"}
			if _, err := c.Update(ctx, upd, client.DryRunAll); apierrors.ReasonOf(err) != apierrors.ReasonForbidden {
				t.Errorf("dry-run update refused by admission: %v; want Forbidden", err)
			}
			st := proto.Clone(stored["unbound"]).(*corev1.Pod)
			st.Status = &corev1.PodStatus{Phase: "Running", PodIp: "10.1.0.9"}
			got, err = c.UpdateStatus(ctx, st, client.DryRunAll)
			if err != nil || got.(*corev1.Pod).Status.PodIp != "10.1.0.9" {
				t.Errorf("dry-run status update: %v, %v", err, got)
			}

			// Bind.
			if err := c.Bind(ctx, "default", "unbound", "node-2", client.DryRunAll); err != nil {
				t.Errorf("dry-run bind: %v", err)
			}
			if err := c.Bind(ctx, "default", "bound", "node-2", client.DryRunAll); !apierrors.IsConflict(err) {
				t.Errorf("dry-run bind of a bound pod: %v; want Conflict", err)
			}

			// Delete: a graceful pod would be marked, the others go; nothing happens.
			got, err = c.Delete(ctx, pods, "default", "bound", client.DeleteOptions{DryRun: true})
			if err != nil || got.GetMetadata().DeletionTimestamp == "" || got.GetMetadata().GetDeletionGracePeriodSeconds() != 30 {
				t.Errorf("dry-run delete of a bound pod: %v, %v; want it as marked with grace 30", err, got.GetMetadata())
			}
			for _, ref := range []struct {
				k        *scheme.Kind
				ns, name string
			}{{pods, "default", "unbound"}, {svcs, "default", "web"}, {nss, "", "team"}} {
				if _, err := c.Delete(ctx, ref.k, ref.ns, ref.name, client.DeleteOptions{DryRun: true}); err != nil {
					t.Errorf("dry-run delete of %s: %v", ref.name, err)
				}
			}
			q.assertNothingSince(t, "dry runs")
			for name, want := range stored {
				k := pods
				switch name {
				case "web":
					k = svcs
				case "team":
					k = nss
				}
				ns := "default"
				if k == nss {
					ns = ""
				}
				if got, err := env.Client.Get(ctx, k, ns, name); err != nil || !proto.Equal(got, want) {
					t.Errorf("%s changed by dry runs: %v", name, err)
				}
			}
		})
	}

	// Over REST the dryRun parameter itself, and a value other than All.
	code, body := restCall(t, env, "POST", podsPath+"?dryRun=All", podJSON("rest-dry", nil))
	if code != http.StatusCreated || dig(body, "metadata", "uid") == nil || dig(body, "metadata", "resourceVersion") != nil {
		t.Errorf("REST dry-run create: %d %v; want 201 with a uid and no resourceVersion", code, body)
	}
	code, body = restCall(t, env, "DELETE", podsPath+"/unbound", `{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}`)
	if code != http.StatusOK {
		t.Errorf("REST dry-run delete in the body: %d %v", code, body)
	}
	for _, path := range []string{podsPath + "?dryRun=Maybe", podsPath + "?dryRun=All&dryRun=Maybe"} {
		code, body = restCall(t, env, "POST", path, podJSON("maybe", nil))
		if code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["message"]), `dryRun: Unsupported value: "Maybe"`) {
			t.Errorf("POST %s: %d %v; want 422 dryRun: Unsupported value", path, code, body)
		}
	}
	code, body = restCall(t, env, "DELETE", podsPath+"/unbound", `{"dryRun":["Maybe"]}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["message"]), `DeleteOptions "" is invalid: dryRun`) {
		t.Errorf("DELETE with dryRun Maybe in the body: %d %v; want 422 invalid DeleteOptions", code, body)
	}
	for _, name := range []string{"rest-dry", "maybe"} {
		if _, err := env.Client.Get(ctx, pods, "default", name); !apierrors.IsNotFound(err) {
			t.Errorf("%s stored: %v", name, err)
		}
	}
	if _, err := env.Client.Get(ctx, pods, "default", "unbound"); err != nil {
		t.Errorf("unbound deleted by a dry run: %v", err)
	}
	// Over gRPC an unknown value is refused the same way.
	conn := regRawGRPC(t, env)
	_, err := corev1.NewPodAPIClient(conn).Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Pod: newPod("grpc-maybe"), DryRun: []string{"Maybe"}})
	if se := apierrors.FromError(err); se.Status.GetCode() != http.StatusUnprocessableEntity || !strings.Contains(se.Status.GetMessage(), `dryRun: Unsupported value: "Maybe"`) {
		t.Errorf("gRPC create with dryRun Maybe: %v; want 422 dryRun: Unsupported value", err)
	}
}
