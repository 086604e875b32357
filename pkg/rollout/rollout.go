// Package rollout is the client side of Deployment rollouts, as kubectl implements it: the
// status a rollout is in (kubectl's DeploymentStatusViewer), its revision history, undo (copy
// an older ReplicaSet's template back into the Deployment), restart, pause and resume. The CLI
// (`skiff rollout`) and tests share it.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
)

// Annotations a rollout reads and writes, as Kubernetes names them.
const (
	RevisionAnnotation    = "deployment.kubernetes.io/revision"
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
)

// annotationsToSkip are the Deployment annotations an undo leaves as they are (kubectl's
// list).
var annotationsToSkip = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
	RevisionAnnotation:                          true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	"deprecated.deployment.rollback.to":         true,
}

// ErrProgressDeadline is returned by Status for a rollout past its progress deadline.
var ErrProgressDeadline = errors.New("exceeded its progress deadline")

// Status says where a Deployment's rollout stands, in kubectl's words, and whether it is
// done. revision > 0 also requires the Deployment to be at that revision.
func Status(d *appsv1.Deployment, revision int64) (string, bool, error) {
	name := d.GetMetadata().GetName()
	if revision > 0 {
		cur, err := strconv.ParseInt(d.GetMetadata().GetAnnotations()[RevisionAnnotation], 10, 64)
		if err != nil {
			return "", false, fmt.Errorf("cannot get the revision of deployment %q: %w", name, err)
		}
		if revision != cur {
			return "", false, fmt.Errorf("desired revision (%d) is different from the running revision (%d)", revision, cur)
		}
	}
	st := d.GetStatus()
	if d.GetMetadata().GetGeneration() > st.GetObservedGeneration() {
		return "Waiting for deployment spec update to be observed...\n", false, nil
	}
	for _, c := range st.GetConditions() {
		if c.GetType() == "Progressing" && c.GetReason() == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("deployment %q %w", name, ErrProgressDeadline)
		}
	}
	want := int32(1)
	if d.GetSpec().Replicas != nil {
		want = d.GetSpec().GetReplicas()
	}
	switch {
	case st.GetUpdatedReplicas() < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...\n",
			name, st.GetUpdatedReplicas(), want), false, nil
	case st.GetReplicas() > st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...\n",
			name, st.GetReplicas()-st.GetUpdatedReplicas()), false, nil
	case st.GetAvailableReplicas() < st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...\n",
			name, st.GetAvailableReplicas(), st.GetUpdatedReplicas()), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out\n", name), true, nil
}

// Revision is one entry of a Deployment's history: a ReplicaSet it owns.
type Revision struct {
	Number      int64
	ChangeCause string
	ReplicaSet  *appsv1.ReplicaSet
}

// History lists the Deployment's revisions, lowest first.
func History(ctx context.Context, c client.Interface, d *appsv1.Deployment) ([]Revision, error) {
	k, err := c.Scheme().ForName("replicasets")
	if err != nil {
		return nil, err
	}
	list, err := client.ListAll(ctx, c, k, d.GetMetadata().GetNamespace(), client.ListOptions{Limit: 500})
	if err != nil {
		return nil, err
	}
	var out []Revision
	for _, obj := range list.Items {
		rs := obj.(*appsv1.ReplicaSet)
		ref := controller.ControllerOf(rs.GetMetadata())
		if ref == nil || ref.GetUid() != d.GetMetadata().GetUid() {
			continue
		}
		n, err := strconv.ParseInt(rs.GetMetadata().GetAnnotations()[RevisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, Revision{Number: n, ChangeCause: rs.GetMetadata().GetAnnotations()[ChangeCauseAnnotation], ReplicaSet: rs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// Undo rolls the Deployment back to revision toRevision (0: the one before the current),
// by copying that ReplicaSet's template (without its hash label) and annotations into the
// Deployment, as kubectl does. It returns kubectl's verb: "rolled back", or "skipped
// rollback (...)" when the template already matches.
func Undo(ctx context.Context, c client.Interface, namespace, name string, toRevision int64) (string, error) {
	k, err := c.Scheme().ForName("deployments")
	if err != nil {
		return "", err
	}
	var result string
	err = retryOnConflict(ctx, func() error {
		obj, err := c.Get(ctx, k, namespace, name)
		if err != nil {
			return err
		}
		d := obj.(*appsv1.Deployment)
		if d.GetSpec().GetPaused() {
			return fmt.Errorf("you cannot rollback a paused deployment; resume it first with 'skiff rollout resume deployment/%s' and try again", name)
		}
		history, err := History(ctx, c, d)
		if err != nil {
			return err
		}
		target, err := pickRevision(history, toRevision)
		if err != nil {
			return err
		}
		tmpl := proto.Clone(target.ReplicaSet.GetSpec().GetTemplate()).(*corev1.PodTemplateSpec)
		if controller.EqualIgnoreHash(tmpl, d.GetSpec().GetTemplate()) {
			result = fmt.Sprintf("skipped rollback (current template already matches revision %d)", target.Number)
			return nil
		}
		delete(tmpl.GetMetadata().GetLabels(), controller.PodTemplateHashLabel)
		annotations := map[string]string{}
		for key, v := range d.GetMetadata().GetAnnotations() {
			if annotationsToSkip[key] {
				annotations[key] = v
			}
		}
		for key, v := range target.ReplicaSet.GetMetadata().GetAnnotations() {
			if !annotationsToSkip[key] {
				annotations[key] = v
			}
		}
		d.Metadata.Annotations = annotations
		d.Spec.Template = tmpl
		if _, err := c.Update(ctx, d); err != nil {
			return err
		}
		result = "rolled back"
		return nil
	})
	return result, err
}

// pickRevision finds revision n, or with n == 0 the highest one below the current (highest).
func pickRevision(history []Revision, n int64) (Revision, error) {
	if n > 0 {
		for _, r := range history {
			if r.Number == n {
				return r, nil
			}
		}
		return Revision{}, fmt.Errorf("unable to find specified revision %d in history", n)
	}
	if len(history) < 2 {
		return Revision{}, errors.New("no rollout history found for deployment")
	}
	return history[len(history)-2], nil
}

// Restart makes the Deployment roll out its pods again, unchanged: it stamps the template
// with kubectl.kubernetes.io/restartedAt.
func Restart(ctx context.Context, c client.Interface, namespace, name string, now time.Time) error {
	return updateDeployment(ctx, c, namespace, name, func(d *appsv1.Deployment) error {
		if d.GetSpec().GetPaused() {
			return fmt.Errorf("can't restart paused deployment (run rollout resume first)")
		}
		tmpl := d.GetSpec().GetTemplate()
		if tmpl.Metadata == nil {
			tmpl.Metadata = &metav1.ObjectMeta{}
		}
		tmpl.Metadata.Annotations = maps.Clone(tmpl.Metadata.Annotations)
		if tmpl.Metadata.Annotations == nil {
			tmpl.Metadata.Annotations = map[string]string{}
		}
		tmpl.Metadata.Annotations[RestartedAtAnnotation] = now.Format(time.RFC3339)
		return nil
	})
}

// SetPaused pauses or resumes the Deployment; pausing a paused one (or resuming a running
// one) is an error, as kubectl reports it.
func SetPaused(ctx context.Context, c client.Interface, namespace, name string, paused bool) error {
	return updateDeployment(ctx, c, namespace, name, func(d *appsv1.Deployment) error {
		if d.GetSpec().GetPaused() == paused {
			if paused {
				return fmt.Errorf("deployments.apps %q is already paused", name)
			}
			return fmt.Errorf("deployments.apps %q is not paused", name)
		}
		d.Spec.Paused = paused
		return nil
	})
}

func updateDeployment(ctx context.Context, c client.Interface, namespace, name string, change func(*appsv1.Deployment) error) error {
	k, err := c.Scheme().ForName("deployments")
	if err != nil {
		return err
	}
	return retryOnConflict(ctx, func() error {
		obj, err := c.Get(ctx, k, namespace, name)
		if err != nil {
			return err
		}
		d := obj.(*appsv1.Deployment)
		if err := change(d); err != nil {
			return err
		}
		_, err = c.Update(ctx, d)
		return err
	})
}

// retryOnConflict retries fn while it fails with 409 Conflict (the controller writes the
// Deployment too), a few times.
func retryOnConflict(ctx context.Context, fn func() error) error {
	var err error
	for i := range 5 {
		if err = fn(); err == nil || !apierrors.IsConflict(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(10<<i) * time.Millisecond):
		}
	}
	return err
}
