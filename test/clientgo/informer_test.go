package clientgo

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

// startSkiff runs a Skiff apiserver (real etcd and NATS) and returns client-go's clientset
// for it, speaking protobuf as kubectl's typed clients do, or JSON.
func startSkiff(t *testing.T, contentType string) kubernetes.Interface {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Configure: func(c *apiserver.Config) { c.BookmarkInterval = time.Second }})
	cfg := &rest.Config{Host: env.HTTPURL, ContentConfig: rest.ContentConfig{ContentType: contentType}, QPS: 1000, Burst: 1000}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func webDeployment(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "nginx:1.27",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
					Env: []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromString("http")}}},
				}}},
			},
		},
	}
}

// TestInformerAndLister is a controller's view of Skiff through client-go: a shared informer
// factory lists and watches deployments and pods, its listers answer from the cache, and
// every change made through the typed clientset (create, update, patch, status, scale,
// delete) reaches the event handlers in order.
func TestInformerAndLister(t *testing.T) {
	for _, ct := range []string{"application/vnd.kubernetes.protobuf", "application/json"} {
		t.Run(ct, func(t *testing.T) { informerAndLister(t, ct) })
	}
}

func informerAndLister(t *testing.T, contentType string) {
	cs := startSkiff(t, contentType)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if _, err := cs.AppsV1().Deployments("shop").Create(ctx, webDeployment("before"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("shop"))
	deployInformer := factory.Apps().V1().Deployments()
	podInformer := factory.Core().V1().Pods()
	var mu sync.Mutex
	var seen []string
	record := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, what)
	}
	_, err := deployInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { record("add " + obj.(*appsv1.Deployment).Name) },
		UpdateFunc: func(old, obj any) {
			d := obj.(*appsv1.Deployment)
			record(fmt.Sprintf("update %s replicas=%d ready=%d", d.Name, *d.Spec.Replicas, d.Status.ReadyReplicas))
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			record("delete " + obj.(*appsv1.Deployment).Name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	podInformer.Informer() // registered before Start
	factory.Start(ctx.Done())
	defer func() { cancel(); factory.Shutdown() }() // Shutdown waits for the informers, which stop with ctx
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cache of %v did not sync", typ)
		}
	}
	lister := deployInformer.Lister()
	if d, err := lister.Deployments("shop").Get("before"); err != nil || d.Spec.Template.Spec.Containers[0].Image != "nginx:1.27" {
		t.Fatalf("lister get: %v %v", d, err)
	}

	deployments := cs.AppsV1().Deployments("shop")
	web, err := deployments.Create(ctx, webDeployment("web"), metav1.CreateOptions{FieldManager: "clientgo-test"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if web.UID == "" || web.ResourceVersion == "" || web.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.StrVal != "http" {
		t.Errorf("created: %+v", web)
	}
	web.Spec.Replicas = ptr.To[int32](3)
	if web, err = deployments.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update: %v", err)
	}
	stale := web.DeepCopy()
	stale.ResourceVersion = "1"
	if _, err := deployments.Update(ctx, stale, metav1.UpdateOptions{}); !errors.IsConflict(err) {
		t.Errorf("update at a stale resourceVersion: %v, want a conflict", err)
	}
	web.Status.Replicas, web.Status.ReadyReplicas = 3, 1
	if web, err = deployments.UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	if _, err := deployments.Patch(ctx, "web", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("strategic merge patch: %v", err)
	}
	scale, err := deployments.GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || scale.Spec.Replicas != 3 || scale.Status.Selector != "app=web" {
		t.Fatalf("get scale: %+v %v", scale, err)
	}
	scale.Spec.Replicas = 5
	if _, err := deployments.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update scale: %v", err)
	}
	if err := deployments.Delete(ctx, "before", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatalf("delete: %v", err)
	}

	want := []string{"add before", "add web", "update web replicas=3 ready=0", "update web replicas=3 ready=1",
		"update web replicas=3 ready=1", "update web replicas=5 ready=1", "delete before"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), seen...)
		mu.Unlock()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events:\n got %q\nwant %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	all, err := lister.Deployments("shop").List(labels.Everything())
	if err != nil || len(all) != 1 || all[0].Name != "web" || *all[0].Spec.Replicas != 5 ||
		all[0].Spec.Template.Spec.Containers[0].Image != "nginx:1.28" {
		t.Errorf("lister list: %v %v", all, err)
	}
	if sel, err := lister.Deployments("shop").List(labels.SelectorFromSet(labels.Set{"app": "nothing"})); err != nil || len(sel) != 0 {
		t.Errorf("lister list by selector: %v %v", sel, err)
	}

	// Pods through the same factory: created by the clientset, seen by the pod lister.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if p, err := podInformer.Lister().Pods("shop").Get("p1"); err == nil && p.Status.Phase == corev1.PodPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod lister never saw the pod")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
