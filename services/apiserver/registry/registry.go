// Package registry gives every kind Kubernetes' object semantics on top of storage: server-set
// metadata, defaulting, admission and validation, optimistic concurrency on resourceVersion,
// the status subresource, consistent paginated lists with selectors, and graceful deletion
// with finalizers. One generic implementation serves all kinds of the scheme.
package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/authz"
	"github.com/skiff-project/skiff/services/apiserver/storage"
	"github.com/skiff-project/skiff/services/apiserver/validation"
)

// DefaultPrefix is the etcd key prefix under which objects live.
const DefaultPrefix = "/registry"

// defaultGracePeriodSeconds applies to pods whose spec names none.
const defaultGracePeriodSeconds = 30

// maxConflictRetries bounds the read-modify-write loop of requests that carry no
// resourceVersion and so should win against concurrent writers.
const maxConflictRetries = 16

// Options configure a Registry.
type Options struct {
	Prefix    string           // etcd key prefix; DefaultPrefix when empty
	Admission *admission.Chain // nil: no plugins
	Now       func() time.Time // nil: time.Now
}

// Registry implements the API verbs for every kind of a scheme.
type Registry struct {
	store     *storage.Store
	scheme    *scheme.Scheme
	prefix    string
	admission *admission.Chain
	now       func() time.Time
}

// New returns a registry storing into store.
func New(store *storage.Store, s *scheme.Scheme, opts Options) *Registry {
	r := &Registry{store: store, scheme: s, prefix: opts.Prefix, admission: opts.Admission, now: opts.Now}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Scheme returns the kinds the registry serves.
func (r *Registry) Scheme() *scheme.Scheme { return r.scheme }

// Prefix returns the etcd key prefix of all objects.
func (r *Registry) Prefix() string { return r.prefix }

// Key is where an object is stored: {prefix}/{resource}/{namespace}/{name}, or without the
// namespace for cluster-scoped kinds.
func (r *Registry) Key(k *scheme.Kind, ns, name string) string {
	if k.Namespaced {
		return r.prefix + "/" + k.Resource + "/" + ns + "/" + name
	}
	return r.prefix + "/" + k.Resource + "/" + name
}

// CollectionPrefix is the key prefix of a kind's objects in namespace ns ("" for all).
func (r *Registry) CollectionPrefix(k *scheme.Kind, ns string) string {
	p := r.prefix + "/" + k.Resource + "/"
	if k.Namespaced && ns != "" {
		p += ns + "/"
	}
	return p
}

func (r *Registry) timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Create stores a new object in namespace ns (ignored for cluster-scoped kinds).
func (r *Registry) Create(ctx context.Context, k *scheme.Kind, ns string, obj scheme.Object) (scheme.Object, error) {
	if obj == nil {
		return nil, apierrors.NewBadRequest("a " + k.Kind + " object is required in the request body")
	}
	if err := r.checkTypeMeta(k, obj); err != nil {
		return nil, err
	}
	md := scheme.Meta(obj)
	if err := r.checkNamespace(k, ns, md); err != nil {
		return nil, err
	}
	if md.Name == "" && md.GenerateName != "" {
		md.Name = md.GenerateName + randomSuffix()
	}
	md.Uid = newUID()
	md.CreationTimestamp = r.timestamp(r.now())
	md.ResourceVersion = ""
	md.Generation = 1
	md.DeletionTimestamp = ""
	md.DeletionGracePeriodSeconds = nil
	prepareStatusForCreate(obj)

	validation.Default(obj)
	attrs := &admission.Attributes{Kind: k, Namespace: md.Namespace, Name: md.Name, Operation: admission.Create,
		Object: obj, User: authz.UserFrom(ctx)}
	if err := r.admission.Admit(ctx, attrs); err != nil {
		return nil, err
	}
	if errs := validation.Validate(obj); len(errs) > 0 {
		return nil, invalid(k, md.Name, errs)
	}
	if err := r.admission.Validate(ctx, attrs); err != nil {
		return nil, err
	}

	var require []string
	if k.Namespaced {
		require = append(require, r.prefix+"/namespaces/"+md.Namespace)
	}
	if _, err := r.store.Create(ctx, r.Key(k, md.Namespace, md.Name), obj, require...); err != nil {
		var missing *storage.MissingKeyError
		switch {
		case errors.Is(err, storage.ErrExists):
			return nil, apierrors.NewAlreadyExists(k.Group, k.Resource, md.Name)
		case errors.As(err, &missing):
			return nil, apierrors.NewNotFound("", "namespaces", md.Namespace)
		}
		return nil, apierrors.NewInternal(err)
	}
	return obj, nil
}

// prepareStatusForCreate resets status the way Kubernetes' create strategies do: a new pod
// is Pending, workloads start with no status; nodes and namespaces keep what they bring.
func prepareStatusForCreate(obj scheme.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Status = &corev1.PodStatus{Phase: "Pending"}
	case *corev1.Node, *corev1.Namespace:
	default:
		clearField(obj, "status")
	}
}

// Get reads one object.
func (r *Registry) Get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, error) {
	obj, _, err := r.get(ctx, k, ns, name)
	return obj, err
}

func (r *Registry) get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, int64, error) {
	if name == "" {
		return nil, 0, apierrors.NewBadRequestField("metadata.name", "name is required")
	}
	obj := k.New()
	if err := r.store.Get(ctx, r.Key(k, ns, name), obj); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, apierrors.NewNotFound(k.Group, k.Resource, name)
		}
		return nil, 0, apierrors.NewInternal(err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	rev, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return obj, rev, nil
}

// Update replaces an object's spec and metadata (status is kept: it has its own subresource).
// With a resourceVersion in the body the update applies only to that version; without one it
// applies to the latest.
func (r *Registry) Update(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object) (scheme.Object, error) {
	return r.update(ctx, k, ns, name, obj, "")
}

// UpdateStatus replaces an object's status only.
func (r *Registry) UpdateStatus(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object) (scheme.Object, error) {
	if !k.HasStatus {
		return nil, apierrors.NewMethodNotSupported(k.Group, k.Resource, "update status")
	}
	return r.update(ctx, k, ns, name, obj, "status")
}

func (r *Registry) update(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object, sub string) (scheme.Object, error) {
	if obj == nil {
		return nil, apierrors.NewBadRequest("a " + k.Kind + " object is required in the request body")
	}
	if err := r.checkTypeMeta(k, obj); err != nil {
		return nil, err
	}
	md := scheme.Meta(obj)
	if err := r.checkNamespace(k, ns, md); err != nil {
		return nil, err
	}
	if md.Name == "" {
		md.Name = name
	}
	if md.Name != name {
		return nil, apierrors.NewBadRequestField("metadata.name",
			fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", md.Name, name))
	}
	wantRV := md.ResourceVersion
	for attempt := 0; ; attempt++ {
		cur, rev, err := r.get(ctx, k, md.Namespace, name)
		if err != nil {
			return nil, err
		}
		curMD := cur.GetMetadata()
		if wantRV != "" && wantRV != curMD.ResourceVersion {
			return nil, conflict(k, name)
		}
		if md.Uid != "" && md.Uid != curMD.Uid {
			return nil, apierrors.NewConflict(k.Group, k.Resource, name,
				fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", md.Uid, curMD.Uid))
		}

		var next scheme.Object
		var errs validation.ErrorList
		if sub == "status" {
			next = proto.Clone(cur).(scheme.Object)
			copyField(next, obj, "status")
			errs = validation.ValidateStatusUpdate(next, cur)
		} else {
			next = proto.Clone(obj).(scheme.Object)
			nmd := next.GetMetadata()
			// Server-owned metadata comes from the stored object.
			nmd.Uid, nmd.CreationTimestamp = curMD.Uid, curMD.CreationTimestamp
			nmd.DeletionTimestamp, nmd.DeletionGracePeriodSeconds = curMD.DeletionTimestamp, curMD.DeletionGracePeriodSeconds
			nmd.Generation, nmd.GenerateName = curMD.Generation, curMD.GenerateName
			if k.HasStatus {
				copyField(next, cur, "status")
			}
			validation.Default(next)
			if specChanged(next, cur) {
				nmd.Generation++
			}
		}
		next.GetMetadata().ResourceVersion = curMD.ResourceVersion

		attrs := &admission.Attributes{Kind: k, Namespace: md.Namespace, Name: name, SubResource: sub,
			Operation: admission.Update, Object: next, OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Admit(ctx, attrs); err != nil {
			return nil, err
		}
		if sub == "" {
			errs = validation.ValidateUpdate(next, cur)
		}
		if len(errs) > 0 {
			return nil, invalid(k, name, errs)
		}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return nil, err
		}
		if proto.Equal(next, cur) {
			return cur, nil // a no-op update writes nothing and keeps the resourceVersion
		}

		key := r.Key(k, md.Namespace, name)
		nmd := next.GetMetadata()
		if nmd.DeletionTimestamp != "" && len(nmd.Finalizers) == 0 && nmd.GetDeletionGracePeriodSeconds() == 0 {
			// The last finalizer is gone from an object being deleted: it goes now.
			_, err = r.store.Delete(ctx, key, rev)
		} else {
			_, err = r.store.Update(ctx, key, next, rev)
		}
		switch {
		case err == nil:
			return next, nil
		case errors.Is(err, storage.ErrNotFound):
			return nil, apierrors.NewNotFound(k.Group, k.Resource, name)
		case errors.Is(err, storage.ErrConflict):
			if wantRV != "" || attempt >= maxConflictRetries {
				return nil, conflict(k, name)
			}
			continue
		default:
			return nil, apierrors.NewInternal(err)
		}
	}
}

// DeleteOptions are the knobs of a delete.
type DeleteOptions struct {
	GracePeriodSeconds *int64 // overrides the pod's grace period; 0 deletes at once
	ResourceVersion    string // precondition: the object must still be at this version
}

// Delete removes an object as Kubernetes does: an object with finalizers, or a pod bound to a
// node with a grace period, only gets a deletionTimestamp; it goes away when the finalizers
// are cleared or the node confirms (a delete with grace 0). Other objects go at once.
func (r *Registry) Delete(ctx context.Context, k *scheme.Kind, ns, name string, opts DeleteOptions) (scheme.Object, error) {
	if k.Kind == "Namespace" && (name == "default" || name == "kube-system") {
		return nil, apierrors.NewForbidden(k.Group, k.Resource, name, "this namespace may not be deleted")
	}
	for attempt := 0; ; attempt++ {
		cur, rev, err := r.get(ctx, k, ns, name)
		if err != nil {
			return nil, err
		}
		md := cur.GetMetadata()
		if opts.ResourceVersion != "" && opts.ResourceVersion != md.ResourceVersion {
			return nil, conflict(k, name)
		}
		attrs := &admission.Attributes{Kind: k, Namespace: md.Namespace, Name: name, Operation: admission.Delete,
			OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return nil, err
		}

		grace := int64(0)
		if pod, ok := cur.(*corev1.Pod); ok && pod.GetSpec().GetNodeName() != "" {
			grace = defaultGracePeriodSeconds
			if g := pod.GetSpec().TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			// A pod that has finished holds nothing on its node.
			if phase := pod.GetStatus().GetPhase(); phase == "Succeeded" || phase == "Failed" {
				grace = 0
			}
		}
		if opts.GracePeriodSeconds != nil {
			grace = max(*opts.GracePeriodSeconds, 0)
		}

		key := r.Key(k, md.Namespace, name)
		if len(md.Finalizers) > 0 || grace > 0 {
			next := proto.Clone(cur).(scheme.Object)
			nmd := next.GetMetadata()
			now := r.now()
			if nmd.DeletionTimestamp == "" || grace < nmd.GetDeletionGracePeriodSeconds() {
				// A shorter grace period may cut a pending one short, never lengthen it.
				nmd.DeletionTimestamp = r.timestamp(now.Add(time.Duration(grace) * time.Second))
				nmd.DeletionGracePeriodSeconds = proto.Int64(grace)
			}
			if proto.Equal(next, cur) {
				return cur, nil
			}
			if len(nmd.Finalizers) == 0 && nmd.GetDeletionGracePeriodSeconds() == 0 {
				_, err = r.store.Delete(ctx, key, rev)
			} else {
				_, err = r.store.Update(ctx, key, next, rev)
			}
			if err == nil {
				return next, nil
			}
		} else if k.Kind == "Namespace" {
			_, err = r.store.DeletePrefixes(ctx, key, rev, r.namespacedPrefixes(name)...)
		} else {
			_, err = r.store.Delete(ctx, key, rev)
		}
		switch {
		case err == nil:
			return cur, nil
		case errors.Is(err, storage.ErrNotFound):
			return nil, apierrors.NewNotFound(k.Group, k.Resource, name)
		case errors.Is(err, storage.ErrConflict):
			if opts.ResourceVersion != "" || attempt >= maxConflictRetries {
				return nil, conflict(k, name)
			}
		default:
			return nil, apierrors.NewInternal(err)
		}
	}
}

// namespacedPrefixes are the key prefixes of every object in namespace ns.
func (r *Registry) namespacedPrefixes(ns string) []string {
	var out []string
	for _, k := range r.scheme.Kinds() {
		if k.Namespaced {
			out = append(out, r.CollectionPrefix(k, ns))
		}
	}
	return out
}

// Bind assigns a pending pod to a node: the binding subresource the scheduler uses. A pod
// can be bound once.
func (r *Registry) Bind(ctx context.Context, ns, name string, b *corev1.Binding) error {
	k, err := r.scheme.ForMessage(&corev1.Pod{})
	if err != nil {
		return apierrors.NewInternal(err)
	}
	target := b.GetTarget()
	if target.GetName() == "" {
		return invalid(k, name, validation.ErrorList{validation.Required(validation.NewPath("target", "name"), "")})
	}
	if target.GetKind() != "" && target.GetKind() != "Node" {
		return invalid(k, name, validation.ErrorList{
			validation.NotSupported(validation.NewPath("target", "kind"), target.GetKind(), []string{"Node"})})
	}
	for attempt := 0; ; attempt++ {
		cur, rev, err := r.get(ctx, k, ns, name)
		if err != nil {
			return err
		}
		pod := cur.(*corev1.Pod)
		if want := b.GetMetadata().GetUid(); want != "" && want != pod.GetMetadata().GetUid() {
			return apierrors.NewConflict("", "pods", name, "the pod's UID does not match the binding's")
		}
		if pod.GetMetadata().GetDeletionTimestamp() != "" {
			return apierrors.NewConflict("", "pods", name, "the pod is being deleted")
		}
		if pod.GetSpec().GetNodeName() != "" {
			return apierrors.NewConflict("", "pods", name,
				fmt.Sprintf("pod %s is already assigned to node %q", name, pod.GetSpec().GetNodeName()))
		}
		attrs := &admission.Attributes{Kind: k, Namespace: ns, Name: name, SubResource: "binding",
			Operation: admission.Create, Object: pod, OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return err
		}
		if pod.Spec == nil {
			pod.Spec = &corev1.PodSpec{}
		}
		pod.Spec.NodeName = target.GetName()
		if pod.Status == nil {
			pod.Status = &corev1.PodStatus{}
		}
		setPodCondition(pod.Status, &corev1.PodCondition{Type: "PodScheduled", Status: "True",
			LastTransitionTime: r.timestamp(r.now())})
		_, err = r.store.Update(ctx, r.Key(k, ns, name), pod, rev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, storage.ErrNotFound):
			return apierrors.NewNotFound("", "pods", name)
		case errors.Is(err, storage.ErrConflict) && attempt < maxConflictRetries:
			continue
		default:
			return apierrors.NewInternal(err)
		}
	}
}

func setPodCondition(st *corev1.PodStatus, c *corev1.PodCondition) {
	for i, old := range st.Conditions {
		if old.Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// EnsureNamespace creates namespace name if it does not exist.
func (r *Registry) EnsureNamespace(ctx context.Context, name string) error {
	k, err := r.scheme.ForMessage(&corev1.Namespace{})
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: name}}
	if _, err := r.Create(ctx, k, "", ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ensure namespace %s: %w", name, err)
	}
	return nil
}

// checkTypeMeta fills apiVersion and kind, refusing a body of another kind.
func (r *Registry) checkTypeMeta(k *scheme.Kind, obj scheme.Object) error {
	av, kind := obj.GetApiVersion(), obj.GetKind()
	if (av != "" && av != k.APIVersion()) || (kind != "" && kind != k.Kind) {
		return apierrors.NewBadRequest(fmt.Sprintf("the body is a %s %s, but the request is for %s %s",
			av, kind, k.APIVersion(), k.Kind))
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	return nil
}

// checkNamespace reconciles the namespace of the URL with the body's, as Kubernetes does.
func (r *Registry) checkNamespace(k *scheme.Kind, ns string, md *metav1.ObjectMeta) error {
	if !k.Namespaced {
		md.Namespace = ""
		return nil
	}
	switch {
	case md.Namespace == "":
		md.Namespace = ns
	case ns != "" && md.Namespace != ns:
		return apierrors.NewBadRequestField("metadata.namespace",
			"the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

func conflict(k *scheme.Kind, name string) error {
	return apierrors.NewConflict(k.Group, k.Resource, name,
		"the object has been modified; please apply your changes to the latest version and try again")
}

// invalid turns field errors into a 422 Status with one cause per field.
func invalid(k *scheme.Kind, name string, errs validation.ErrorList) error {
	causes := make([]*metav1.StatusCause, 0, len(errs))
	for _, e := range errs {
		causes = append(causes, &metav1.StatusCause{
			Reason:  string(e.Type),
			Field:   e.Field,
			Message: strings.TrimPrefix(e.Error(), e.Field+": "),
		})
	}
	return apierrors.NewInvalid(k.Group, k.Kind, name, causes)
}

// specChanged reports whether anything but metadata and status differs: that is what bumps
// metadata.generation.
func specChanged(a, b scheme.Object) bool {
	ca, cb := proto.Clone(a), proto.Clone(b)
	for _, m := range []proto.Message{ca, cb} {
		for _, f := range []protoreflect.Name{"metadata", "status", "api_version", "kind"} {
			clearField(m, f)
		}
	}
	return !proto.Equal(ca, cb)
}

func clearField(m proto.Message, name protoreflect.Name) {
	r := m.ProtoReflect()
	if fd := r.Descriptor().Fields().ByName(name); fd != nil {
		r.Clear(fd)
	}
}

// copyField copies field name from src to dst (both of the same type).
func copyField(dst, src proto.Message, name protoreflect.Name) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	fd := d.Descriptor().Fields().ByName(name)
	if fd == nil {
		return
	}
	if s.Has(fd) {
		d.Set(fd, protoreflect.ValueOfMessage(proto.Clone(s.Get(fd).Message().Interface()).ProtoReflect()))
	} else {
		d.Clear(fd)
	}
}

// newUID returns a random RFC 4122 version 4 UUID.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// randomSuffix is the 5-character suffix of generateName, from Kubernetes' alphabet (no vowels,
// no look-alike characters).
func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	var b [5]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
