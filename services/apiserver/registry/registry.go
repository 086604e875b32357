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
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/authz"
	"github.com/skiff-project/skiff/services/apiserver/ipalloc"
	"github.com/skiff-project/skiff/services/apiserver/storage"
	"github.com/skiff-project/skiff/services/apiserver/validation"
)

// DefaultPrefix is the etcd key prefix under which objects live.
const DefaultPrefix = "/registry"

// Options configure a Registry.
type Options struct {
	Prefix    string           // etcd key prefix; DefaultPrefix when empty
	Admission *admission.Chain // nil: no plugins
	Now       func() time.Time // nil: time.Now
	Logger    *slog.Logger     // nil: slog.Default()
	// ServiceIPRange is where Services' cluster IPs come from; nil: ipalloc.DefaultRange.
	ServiceIPRange *ipalloc.Range
	// ObjectCacheBytes bounds the cache of listed objects' encodings (ListEncoded);
	// 0: DefaultObjectCacheBytes, negative: no cache.
	ObjectCacheBytes int
}

// Registry implements the API verbs for every kind of a scheme.
type Registry struct {
	store     *storage.Store
	scheme    *scheme.Scheme
	prefix    string
	admission *admission.Chain
	now       func() time.Time
	log       *slog.Logger
	// serviceIPs allocates Services' cluster IPs (see service.go).
	serviceIPs *ipalloc.Allocator
	// cache keeps listed objects' encodings by mod revision (rawlist.go); nil when off.
	cache *objectCache
	// ranges batches the full reads of lists that arrive together (rangebatch.go).
	ranges rangeBatches
	// listEvaluated and listReturned count the objects lists examined and returned (ListStats).
	listEvaluated, listReturned atomic.Int64
	// writeConflicts counts writes that lost to a concurrent writer and were retried or
	// refused (WriteConflicts).
	writeConflicts atomic.Int64
}

// New returns a registry storing into store.
func New(store *storage.Store, s *scheme.Scheme, opts Options) *Registry {
	r := &Registry{store: store, scheme: s, prefix: opts.Prefix, admission: opts.Admission, now: opts.Now, log: opts.Logger}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	rng := opts.ServiceIPRange
	if rng == nil {
		var err error
		if rng, err = ipalloc.ParseRange(ipalloc.DefaultRange); err != nil {
			panic(err) // a constant that parses
		}
	}
	r.serviceIPs = ipalloc.New(rng, store, r.prefix)
	switch {
	case opts.ObjectCacheBytes == 0:
		r.cache = newObjectCache(DefaultObjectCacheBytes)
	case opts.ObjectCacheBytes > 0:
		r.cache = newObjectCache(opts.ObjectCacheBytes)
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
func (r *Registry) Create(ctx context.Context, k *scheme.Kind, ns string, obj scheme.Object, opts WriteOptions) (scheme.Object, error) {
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
	if !opts.managedFieldsSet {
		md.ManagedFields = nil
	}
	if err := r.trackFields(k, nil, obj, "", opts); err != nil {
		return nil, err
	}

	w := storage.Write{Key: r.Key(k, md.Namespace, md.Name), Object: obj,
		Conditions: r.createConditions(k, md.Namespace), DryRun: opts.DryRun}
	if err := r.writeObject(ctx, k, w, nil, obj); err != nil {
		return nil, r.storageError(k, md.Namespace, md.Name, err)
	}
	return obj, nil
}

// Get reads one object.
func (r *Registry) Get(ctx context.Context, k *scheme.Kind, ns, name string, opts GetOptions) (scheme.Object, error) {
	if name == "" {
		return nil, apierrors.NewBadRequestField("metadata.name", "name is required")
	}
	var minRev int64
	var ro storage.ReadOptions
	switch rv := opts.ResourceVersion; rv {
	case "":
	case "0":
		ro.Serializable = true
	default:
		var err error
		if minRev, err = parseResourceVersion("resourceVersion", rv); err != nil {
			return nil, err
		}
	}
	obj := k.New()
	current, err := r.store.Get(ctx, r.Key(k, ns, name), obj, ro)
	if minRev > current && (err == nil || errors.Is(err, storage.ErrNotFound)) {
		// Kubernetes waits a little for its cache to reach the version; etcd's answer is
		// already the latest, so a version beyond it does not exist yet.
		return nil, apierrors.NewTooLargeResourceVersion(minRev, current)
	}
	if err != nil {
		return nil, r.storageError(k, ns, name, err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	return obj, nil
}

// latest reads the current object (a quorum read) and its mod revision.
func (r *Registry) latest(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, int64, error) {
	if name == "" {
		return nil, 0, apierrors.NewBadRequestField("metadata.name", "name is required")
	}
	obj := k.New()
	if _, err := r.store.Get(ctx, r.Key(k, ns, name), obj, storage.ReadOptions{}); err != nil {
		return nil, 0, r.storageError(k, ns, name, err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	rev, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return obj, rev, nil
}

// Update replaces an object's spec and metadata (status is kept: it has its own subresource).
// With a resourceVersion in the body the update applies only to that version; without one it
// applies to the latest, however many concurrent writers it has to wait out.
func (r *Registry) Update(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object, opts WriteOptions) (scheme.Object, error) {
	return r.update(ctx, k, ns, name, obj, "", opts)
}

// UpdateStatus replaces an object's status only.
func (r *Registry) UpdateStatus(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object, opts WriteOptions) (scheme.Object, error) {
	if !k.HasStatus {
		return nil, apierrors.NewMethodNotSupported(k.Group, k.Resource, "update status")
	}
	return r.update(ctx, k, ns, name, obj, "status", opts)
}

func (r *Registry) update(ctx context.Context, k *scheme.Kind, ns, name string, obj scheme.Object, sub string, opts WriteOptions) (scheme.Object, error) {
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
	var result scheme.Object
	err := r.readModifyWrite(ctx, k, md.Namespace, name, wantRV == "", func(cur scheme.Object, rev int64) error {
		curMD := cur.GetMetadata()
		if wantRV != "" && wantRV != curMD.ResourceVersion {
			return conflict(k, name)
		}
		if md.Uid != "" && md.Uid != curMD.Uid {
			return apierrors.NewConflict(k.Group, k.Resource, name,
				fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", md.Uid, curMD.Uid))
		}

		var next scheme.Object
		if sub == "status" {
			next = proto.Clone(cur).(scheme.Object)
			copyField(next, obj, "status")
			validation.Default(next)
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
			prepareForUpdate(next, cur)
			validation.Default(next)
		}
		next.GetMetadata().ResourceVersion = curMD.ResourceVersion

		attrs := &admission.Attributes{Kind: k, Namespace: md.Namespace, Name: name, SubResource: sub,
			Operation: admission.Update, Object: next, OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Admit(ctx, attrs); err != nil {
			return err
		}
		var errs validation.ErrorList
		if sub == "status" {
			errs = validation.ValidateStatusUpdate(next, cur)
		} else {
			// The generation counts spec changes, including those mutating admission made.
			nmd := next.GetMetadata()
			nmd.Generation = curMD.Generation
			if specChanged(next, cur) {
				nmd.Generation++
			}
			errs = validation.ValidateUpdate(next, cur)
		}
		if len(errs) > 0 {
			return invalid(k, name, errs)
		}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return err
		}
		if err := r.trackFields(k, cur, next, sub, opts); err != nil {
			return err
		}
		// An object being deleted goes when its last finalizer does.
		deleting := next.GetMetadata().GetDeletionTimestamp() != ""
		var err error
		result, err = r.commit(ctx, k, cur, next, rev, deleting, opts.DryRun)
		return err
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// commit writes next over cur (read at mod revision rev): it removes the object when
// deleting and nothing holds it any more (no finalizers, no pending grace period, and for a
// namespace no content), stores next when it differs from cur, and does nothing for a no-op
// (which keeps the resourceVersion). It returns the object to answer with.
func (r *Registry) commit(ctx context.Context, k *scheme.Kind, cur, next scheme.Object, rev int64, deleting, dryRun bool) (scheme.Object, error) {
	nmd := next.GetMetadata()
	if deleting && !hasFinalizers(next) && nmd.GetDeletionGracePeriodSeconds() == 0 {
		w := r.removeWrite(k, nmd, rev, dryRun)
		if svc, ok := cur.(*corev1.Service); ok {
			w = r.withServiceIPs(w, svc, nil)
		}
		res, err := r.store.Write(ctx, w)
		switch {
		case err == nil:
			if !dryRun {
				r.cache.forget(w.Key)
			}
			if ns := nmd.GetNamespace(); res.Probed[r.terminatingKey(ns)] && !dryRun {
				r.finalizeNamespace(ctx, ns)
			}
			return next, nil
		case isNotEmpty(err):
			// A namespace that still holds objects stays, Terminating, until they are gone.
		default:
			return nil, err
		}
	}
	if proto.Equal(next, cur) {
		return cur, nil
	}
	if err := r.writeObject(ctx, k, r.storeWrite(k, next, rev, dryRun), cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// Delete removes an object as Kubernetes does. A pod running on a node gets a
// deletionTimestamp its grace period ahead and goes when its node confirms (a delete with
// grace 0); an object with finalizers gets a deletionTimestamp and goes when the last
// finalizer is removed; a namespace goes when it is also empty. Everything else goes at once.
func (r *Registry) Delete(ctx context.Context, k *scheme.Kind, ns, name string, opts DeleteOptions) (scheme.Object, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if isNamespaceKind(k) && isImmortalNamespace(name) {
		return nil, apierrors.NewForbidden(k.Group, k.Resource, name, "this namespace may not be deleted")
	}
	pre := opts.Preconditions
	var result scheme.Object
	err := r.readModifyWrite(ctx, k, ns, name, pre.ResourceVersion == "", func(cur scheme.Object, rev int64) error {
		md := cur.GetMetadata()
		if pre.UID != "" && pre.UID != md.GetUid() {
			return apierrors.NewConflict(k.Group, k.Resource, name,
				fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", pre.UID, md.GetUid()))
		}
		if pre.ResourceVersion != "" && pre.ResourceVersion != md.GetResourceVersion() {
			return apierrors.NewConflict(k.Group, k.Resource, name, fmt.Sprintf(
				"Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s",
				pre.ResourceVersion, md.GetResourceVersion()))
		}
		attrs := &admission.Attributes{Kind: k, Namespace: md.GetNamespace(), Name: name, Operation: admission.Delete,
			OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return err
		}
		next := proto.Clone(cur).(scheme.Object)
		if !isNamespaceKind(k) && (md.GetDeletionTimestamp() == "" || md.GetDeletionGracePeriodSeconds() == 0) {
			finalizers, changed, needsCollector := gcFinalizers(next, opts)
			if needsCollector {
				if err := r.requireCollector(ctx, opts.policyName()); err != nil {
					return err
				}
			}
			if changed {
				next.GetMetadata().Finalizers = finalizers
			}
		}
		r.markForDeletion(next, opts.GracePeriodSeconds)
		var err error
		result, err = r.commit(ctx, k, cur, next, rev, true, opts.DryRun)
		return err
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// markForDeletion sets obj's deletionTimestamp and deletionGracePeriodSeconds as a delete
// with the requested grace period does (Kubernetes' BeforeDelete): a graceful object is
// marked its grace period ahead, an object held by finalizers is marked now with period 0,
// and an object already being deleted may only have its grace period cut short. Marking bumps
// the generation, as Kubernetes does.
func (r *Registry) markForDeletion(obj scheme.Object, requested *int64) {
	md := obj.GetMetadata()
	now := r.now()
	if md.GetDeletionTimestamp() != "" {
		old := md.GetDeletionGracePeriodSeconds()
		if requested == nil || old == 0 || *requested >= old {
			return
		}
		// The deadline moves by the difference: the time already waited counts.
		ts, err := time.Parse(time.RFC3339, md.GetDeletionTimestamp())
		if err != nil {
			ts = now.Add(time.Duration(old) * time.Second)
		}
		md.DeletionTimestamp = r.timestamp(ts.Add(time.Duration(*requested-old) * time.Second))
		md.DeletionGracePeriodSeconds = proto.Int64(*requested)
		return
	}
	period, graceful := deletionGrace(obj, requested)
	if !graceful && !hasFinalizers(obj) {
		return // it goes at once
	}
	md.DeletionTimestamp = r.timestamp(now.Add(time.Duration(period) * time.Second))
	md.DeletionGracePeriodSeconds = proto.Int64(period)
	if md.Generation > 0 {
		md.Generation++
	}
	markDeleting(obj)
}

// Bind assigns a pending pod to a node: the binding subresource the scheduler uses. A pod
// can be bound once.
func (r *Registry) Bind(ctx context.Context, ns, name string, b *corev1.Binding, opts WriteOptions) error {
	k, err := r.scheme.ForMessage(&corev1.Pod{})
	if err != nil {
		return apierrors.NewInternal(err)
	}
	if b == nil {
		return apierrors.NewBadRequest("a Binding object is required in the request body")
	}
	// The binding names the pod it binds; a body about another pod is a client's mistake,
	// never a reason to bind the URL's pod.
	if bn := b.GetMetadata().GetName(); bn != name {
		return apierrors.NewBadRequestField("metadata.name",
			fmt.Sprintf("name in URL (%s) does not match name in Binding object (%s)", name, bn))
	}
	if bns := b.GetMetadata().GetNamespace(); bns != "" && bns != ns {
		return apierrors.NewBadRequestField("metadata.namespace",
			"the namespace of the provided object does not match the namespace sent on the request")
	}
	if errs := validation.ValidateBinding(b); len(errs) > 0 {
		return apierrors.NewInvalid(k.Group, "Binding", name, causesOf(errs))
	}
	target := b.GetTarget()
	return r.readModifyWrite(ctx, k, ns, name, true, func(cur scheme.Object, rev int64) error {
		old := cur.(*corev1.Pod)
		if want := b.GetMetadata().GetUid(); want != "" && want != old.GetMetadata().GetUid() {
			return apierrors.NewConflict("", "pods", name, "the pod's UID does not match the binding's")
		}
		if old.GetMetadata().GetDeletionTimestamp() != "" {
			return apierrors.NewConflict("", "pods", name, "the pod is being deleted")
		}
		if old.GetSpec().GetNodeName() != "" {
			return apierrors.NewConflict("", "pods", name,
				fmt.Sprintf("pod %s is already assigned to node %q", name, old.GetSpec().GetNodeName()))
		}
		pod := proto.Clone(old).(*corev1.Pod)
		if pod.Spec == nil {
			pod.Spec = &corev1.PodSpec{}
		}
		pod.Spec.NodeName = target.GetName()
		// Kubernetes copies the binding's annotations onto the pod (a scheduler's notes).
		if a := b.GetMetadata().GetAnnotations(); len(a) > 0 {
			if pod.Metadata.Annotations == nil {
				pod.Metadata.Annotations = map[string]string{}
			}
			maps.Copy(pod.Metadata.Annotations, a)
		}
		if pod.Status == nil {
			pod.Status = &corev1.PodStatus{}
		}
		setPodCondition(pod.Status, &corev1.PodCondition{Type: "PodScheduled", Status: "True",
			LastTransitionTime: r.timestamp(r.now())})
		attrs := &admission.Attributes{Kind: k, Namespace: ns, Name: name, SubResource: "binding",
			Operation: admission.Create, Object: pod, OldObject: cur, User: authz.UserFrom(ctx)}
		if err := r.admission.Validate(ctx, attrs); err != nil {
			return err
		}
		_, err := r.store.Write(ctx, r.storeWrite(k, pod, rev, opts.DryRun))
		return err
	})
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
	if _, err := r.Create(ctx, k, "", ns, WriteOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
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
	return apierrors.NewInvalid(k.Group, k.Kind, name, causesOf(errs))
}

func causesOf(errs validation.ErrorList) []*metav1.StatusCause {
	causes := make([]*metav1.StatusCause, 0, len(errs))
	for _, e := range errs {
		causes = append(causes, &metav1.StatusCause{
			Reason:  string(e.Type),
			Field:   e.Field,
			Message: strings.TrimPrefix(e.Error(), e.Field+": "),
		})
	}
	return causes
}

// specChanged reports whether anything but metadata and status differs: that is what bumps
// metadata.generation.
func specChanged(a, b scheme.Object) bool {
	return !proto.Equal(withoutMeta(a), withoutMeta(b))
}

// withoutMeta is a shallow copy of m without metadata, status, apiVersion and kind: it
// shares the other fields' values with m (no deep copy: a large object, such as the Endpoints
// of a thousand pods, is compared without being copied twice). It must not be modified.
func withoutMeta(m scheme.Object) proto.Message {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Name() {
		case "metadata", "status", "api_version", "kind":
		default:
			dst.Set(fd, v)
		}
		return true
	})
	return dst.Interface()
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
