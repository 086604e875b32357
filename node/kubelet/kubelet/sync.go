package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"

	"github.com/skiff-project/skiff/node/kubelet/images"
	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// Waiting reasons, as Kubernetes reports them in containerStatuses.
const (
	reasonContainerCreating          = "ContainerCreating"
	reasonPodInitializing            = "PodInitializing"
	reasonCrashLoopBackOff           = "CrashLoopBackOff"
	reasonErrImagePull               = "ErrImagePull"
	reasonImagePullBackOff           = "ImagePullBackOff"
	reasonErrImageNeverPull          = "ErrImageNeverPull"
	reasonInvalidImageName           = "InvalidImageName"
	reasonCreateContainerConfigError = "CreateContainerConfigError"
	reasonCreateContainerError       = "CreateContainerError"
	reasonRunContainerError          = "RunContainerError"
)

// podRecord is what the kubelet remembers of a pod between syncs.
type podRecord struct {
	uid       string
	firstSeen time.Time
	// runningReported is set once the pod's Running status has been written (for the
	// startup latency metric).
	runningReported bool
	containers      map[string]*containerRecord
	sandboxError    string
}

// containerRecord is the per-container state of back-offs and the last failure.
type containerRecord struct {
	// crashBackoff is the delay before the next restart after an exit (0: restart at once).
	crashBackoff time.Duration
	// retryAt and retryBackoff pace attempts after image pull and start failures.
	retryAt      time.Time
	retryBackoff time.Duration
	// waitingReason and waitingMessage describe why the container is not running.
	waitingReason, waitingMessage string
}

func (k *Kubelet) record(pod *corev1.Pod) *podRecord {
	k.mu.Lock()
	defer k.mu.Unlock()
	uid := pod.GetMetadata().GetUid()
	r, ok := k.records[uid]
	if !ok {
		r = &podRecord{uid: uid, firstSeen: time.Now(), containers: map[string]*containerRecord{}}
		k.records[uid] = r
	}
	return r
}

func (r *podRecord) container(name string) *containerRecord {
	c, ok := r.containers[name]
	if !ok {
		c = &containerRecord{}
		r.containers[name] = c
	}
	return c
}

func (k *Kubelet) noteFirstSeen(obj scheme.Object) {
	if p, ok := obj.(*corev1.Pod); ok {
		k.record(p)
	}
}

func (k *Kubelet) forget(uid string) {
	k.mu.Lock()
	delete(k.records, uid)
	k.mu.Unlock()
}

// nextBackoff doubles d from the base up to the maximum.
func (k *Kubelet) nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return k.cfg.BackoffBase
	}
	return min(2*d, k.cfg.BackoffMax)
}

// podState is what the runtime runs for one pod key.
type podState struct {
	sandboxes  []*runtime.Sandbox
	containers []*runtime.Container
}

// listFor returns the runtime's sandboxes and containers of the pod key ns/name.
func (k *Kubelet) listFor(ctx context.Context, ns, name string) (podState, error) {
	var st podState
	sbs, err := k.rt.ListSandboxes(ctx)
	if err != nil {
		return st, err
	}
	for _, sb := range sbs {
		if sb.Pod.Namespace == ns && sb.Pod.Name == name {
			st.sandboxes = append(st.sandboxes, sb)
		}
	}
	cs, err := k.rt.ListContainers(ctx)
	if err != nil {
		return st, err
	}
	for _, c := range cs {
		if c.Pod.Namespace == ns && c.Pod.Name == name {
			st.containers = append(st.containers, c)
		}
	}
	sort.Slice(st.sandboxes, func(i, j int) bool { return st.sandboxes[i].CreatedAt.After(st.sandboxes[j].CreatedAt) })
	sort.Slice(st.containers, func(i, j int) bool {
		a, b := st.containers[i], st.containers[j]
		if a.Attempt != b.Attempt {
			return a.Attempt > b.Attempt
		}
		return a.CreatedAt.After(b.CreatedAt)
	})
	return st, nil
}

// split separates what belongs to the pod with uid from the rest (other incarnations).
func (s podState) split(uid string) (mine, others podState) {
	for _, sb := range s.sandboxes {
		if sb.Pod.UID == uid {
			mine.sandboxes = append(mine.sandboxes, sb)
		} else {
			others.sandboxes = append(others.sandboxes, sb)
		}
	}
	for _, c := range s.containers {
		if c.Pod.UID == uid {
			mine.containers = append(mine.containers, c)
		} else {
			others.containers = append(others.containers, c)
		}
	}
	return mine, others
}

// syncPod reconciles the pod key ns/name; requeue > 0 asks for another sync after it.
func (k *Kubelet) syncPod(ctx context.Context, key string) (requeue time.Duration, err error) {
	ns, name := informer.SplitKey(key)
	var pod *corev1.Pod
	if obj, ok := k.pods.Store().GetByKey(key); ok {
		pod = obj.(*corev1.Pod)
	}
	all, err := k.listFor(ctx, ns, name)
	if err != nil {
		return 0, err
	}
	mine, others := all.split(pod.GetMetadata().GetUid())
	if pod == nil {
		mine, others = podState{}, all
	}
	if len(others.sandboxes)+len(others.containers) > 0 {
		// A pod deleted while the kubelet was away, force-deleted, or replaced by a new pod of
		// the same name: whatever ran for it goes.
		if err := k.killPod(ctx, others, k.goneGrace(key)); err != nil {
			return 0, err
		}
		uids := map[string]bool{}
		for _, sb := range others.sandboxes {
			uids[sb.Pod.UID] = true
		}
		for _, c := range others.containers {
			uids[c.Pod.UID] = true
		}
		for uid := range uids {
			k.removePodFiles(ns, name, uid)
			k.forget(uid)
			k.prober.prunePod(uid, nil)
		}
	}
	if pod == nil {
		k.mu.Lock()
		delete(k.lastDeleted, key)
		k.mu.Unlock()
		return 0, nil
	}
	if pod.GetMetadata().GetDeletionTimestamp() != "" {
		k.startTermination(ctx, key, pod, mine)
		return 0, nil
	}
	switch pod.GetStatus().GetPhase() {
	case "Succeeded", "Failed":
		// Finished: nothing runs again; the network goes, the containers stay for logs.
		for _, sb := range mine.sandboxes {
			if sb.State == runtime.SandboxReady {
				if err := k.rt.StopSandbox(ctx, sb.ID); err != nil {
					return 0, err
				}
			}
		}
		k.prober.prunePod(pod.GetMetadata().GetUid(), nil)
		return 0, nil
	}
	return k.syncRunning(ctx, pod, mine)
}

// goneGrace is the grace period for a pod that left the informer: its last known period.
func (k *Kubelet) goneGrace(key string) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.lastDeleted[key]; ok {
		if g := p.GetMetadata().DeletionGracePeriodSeconds; g != nil {
			return time.Duration(*g) * time.Second
		}
		if g := p.GetSpec().TerminationGracePeriodSeconds; g != nil {
			return time.Duration(*g) * time.Second
		}
	}
	return 2 * time.Second
}

// killPod stops every container of st (in parallel, each with grace) and removes them and
// the sandboxes.
func (k *Kubelet) killPod(ctx context.Context, st podState, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(st.containers))
	for i, c := range st.containers {
		if c.State != runtime.ContainerRunning {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.rt.StopContainer(ctx, c.ID, grace)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range st.containers {
		if err := k.rt.RemoveContainer(ctx, c.ID); err != nil {
			return err
		}
	}
	for _, sb := range st.sandboxes {
		if err := k.rt.RemoveSandbox(ctx, sb.ID); err != nil {
			return err
		}
	}
	return nil
}

// termination is a pod's termination under way; a delete that shortens the grace period
// sends the new one on shorten.
type termination struct {
	grace   time.Duration
	shorten chan time.Duration
}

// startTermination runs the pod's termination in a goroutine of its own: its grace period
// (30 s by default) must hold no worker, or deleting a few pods would stall every other pod's
// sync. A later delete with a shorter grace period cuts the wait short, as Kubernetes does. A
// failed termination is retried through the queue.
func (k *Kubelet) startTermination(ctx context.Context, key string, pod *corev1.Pod, st podState) {
	uid := pod.GetMetadata().GetUid()
	grace := time.Duration(pod.GetMetadata().GetDeletionGracePeriodSeconds()) * time.Second
	k.mu.Lock()
	if t, ok := k.terminating[uid]; ok {
		if grace < t.grace {
			t.grace = grace
			select {
			case <-t.shorten: // replaced by the shorter one
			default:
			}
			t.shorten <- grace
		}
		k.mu.Unlock()
		return
	}
	t := &termination{grace: grace, shorten: make(chan time.Duration, 1)}
	k.terminating[uid] = t
	k.mu.Unlock()
	k.bg.Add(1)
	go func() {
		defer k.bg.Done()
		err := k.terminate(ctx, pod, st, grace, t.shorten)
		k.mu.Lock()
		delete(k.terminating, uid)
		k.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			k.log.Warn("pod termination failed, retrying", "pod", key, "error", err)
			k.queue.AddRateLimited(key)
		}
	}()
}

// terminate runs a pod's graceful deletion: containers get SIGTERM and the grace period (or a
// shorter one that arrives on shorten), then everything is removed and the deletion confirmed.
func (k *Kubelet) terminate(ctx context.Context, pod *corev1.Pod, st podState, grace time.Duration, shorten <-chan time.Duration) error {
	md := pod.GetMetadata()
	for _, c := range st.containers {
		if c.State == runtime.ContainerRunning {
			k.recorder.Eventf(pod, "Normal", "Killing", "Stopping container %s", c.Name)
		}
	}
	k.prober.prunePod(md.GetUid(), nil)
	for {
		stopCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- k.killPod(stopCtx, st, grace) }()
		var err error
		select {
		case err = <-done:
			cancel()
		case g := <-shorten:
			cancel()
			<-done
			grace = g
			k.log.Info("grace period shortened", "pod", md.GetNamespace()+"/"+md.GetName(), "grace", grace)
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	k.removePodFiles(md.GetNamespace(), md.GetName(), md.GetUid())
	zero := int64(0)
	_, err := k.client.Delete(ctx, k.podsKind, md.GetNamespace(), md.GetName(), client.DeleteOptions{GracePeriodSeconds: &zero, UID: md.GetUid()})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("confirm deletion: %w", err)
	}
	k.forget(md.GetUid())
	k.log.Info("pod terminated", "pod", md.GetNamespace()+"/"+md.GetName(), "grace", grace)
	return nil
}

// podDir holds a pod's volumes; logDir its containers' logs.
func (k *Kubelet) podDir(uid string) string { return filepath.Join(k.cfg.RootDir, "pods", uid) }

func (k *Kubelet) logDir(ns, name, uid string) string {
	return filepath.Join(k.cfg.RootDir, "logs", ns+"_"+name+"_"+uid)
}

func (k *Kubelet) removePodFiles(ns, name, uid string) {
	for _, d := range []string{k.podDir(uid), k.logDir(ns, name, uid)} {
		if err := os.RemoveAll(d); err != nil {
			k.log.Warn("remove pod files", "dir", d, "error", err)
		}
	}
}

// syncRunning makes a live pod's sandbox and containers match its spec and writes its status.
func (k *Kubelet) syncRunning(ctx context.Context, pod *corev1.Pod, st podState) (time.Duration, error) {
	rec := k.record(pod)
	uid := pod.GetMetadata().GetUid()
	var sb *runtime.Sandbox
	for _, s := range st.sandboxes {
		if s.State == runtime.SandboxReady {
			sb = s
			break
		}
	}
	// Sandboxes other than the current one go, with any container still running in them.
	var stale podState
	for _, s := range st.sandboxes {
		if s != sb {
			stale.sandboxes = append(stale.sandboxes, s)
		}
	}
	for _, c := range st.containers {
		if c.State == runtime.ContainerRunning && (sb == nil || c.SandboxID != sb.ID) {
			stale.containers = append(stale.containers, c)
		}
	}
	if len(stale.containers) > 0 {
		grace := time.Duration(pod.GetSpec().GetTerminationGracePeriodSeconds()) * time.Second
		for _, c := range stale.containers {
			if err := k.rt.StopContainer(ctx, c.ID, grace); err != nil {
				return 0, err
			}
		}
	}
	for _, s := range stale.sandboxes {
		if err := k.rt.RemoveSandbox(ctx, s.ID); err != nil {
			return 0, err
		}
	}
	if sb == nil {
		created, err := k.rt.RunSandbox(ctx, k.sandboxConfig(pod))
		if err != nil {
			rec.sandboxError = err.Error()
			k.recorder.Eventf(pod, "Warning", "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			_ = k.writeStatus(ctx, pod, k.computeStatus(pod, nil, st.containers, rec))
			return 0, err
		}
		rec.sandboxError = ""
		sb = created
		if len(st.containers) > 0 {
			k.recorder.Eventf(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
		}
	}

	requeue := time.Duration(0)
	addRequeue := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	latest := latestByName(st.containers)
	spec := pod.GetSpec()
	// Init containers run one after another to completion before the regular ones start.
	initDone := true
	for _, c := range spec.GetInitContainers() {
		cur := latest[c.Name]
		if cur != nil && cur.State == runtime.ContainerExited && cur.ExitCode == 0 {
			continue
		}
		initDone = false
		if cur != nil && cur.State == runtime.ContainerRunning {
			break
		}
		if cur != nil && cur.State == runtime.ContainerExited && spec.GetRestartPolicy() == "Never" {
			break // the pod has failed
		}
		addRequeue(k.startOrBackOff(ctx, pod, c, cur, sb, rec))
		break
	}
	if initDone {
		for _, c := range spec.GetContainers() {
			cur := latest[c.Name]
			if cur != nil && cur.State == runtime.ContainerRunning {
				if why := k.prober.shouldKill(cur.ID); why != "" {
					k.recorder.Eventf(pod, "Normal", "Killing", "Container %s %s, will be restarted", c.Name, why)
					if err := k.rt.StopContainer(ctx, cur.ID, time.Duration(spec.GetTerminationGracePeriodSeconds())*time.Second); err != nil {
						return 0, err
					}
					addRequeue(time.Millisecond)
				}
				continue
			}
			if cur != nil && cur.State == runtime.ContainerExited && !shouldRestart(spec.GetRestartPolicy(), cur.ExitCode) {
				continue
			}
			addRequeue(k.startOrBackOff(ctx, pod, c, cur, sb, rec))
		}
	}

	after, err := k.listFor(ctx, pod.GetMetadata().GetNamespace(), pod.GetMetadata().GetName())
	if err != nil {
		return 0, err
	}
	mine, _ := after.split(uid)
	if err := k.removeDeadContainers(ctx, mine.containers); err != nil {
		k.log.Warn("remove dead containers", "pod", pod.GetMetadata().GetName(), "error", err)
	}
	k.prober.sync(pod, mine.containers, sb.IP)
	status := k.computeStatus(pod, sb, mine.containers, rec)
	if err := k.writeStatus(ctx, pod, status); err != nil {
		return 0, err
	}
	if status.GetPhase() == "Running" && !rec.runningReported {
		rec.runningReported = true
		k.metrics.startupLatency.Observe(time.Since(rec.firstSeen).Seconds())
	}
	return requeue, nil
}

// shouldRestart applies a restart policy to a container that exited with code.
func shouldRestart(policy string, code int32) bool {
	switch policy {
	case "Never":
		return false
	case "OnFailure":
		return code != 0
	}
	return true
}

// latestByName is each container name's newest instance (containers sorted newest first).
func latestByName(cs []*runtime.Container) map[string]*runtime.Container {
	out := map[string]*runtime.Container{}
	for _, c := range cs {
		if _, ok := out[c.Name]; !ok {
			out[c.Name] = c
		}
	}
	return out
}

// previousByName is each name's instance before the newest (for lastState and --previous).
func previousByName(cs []*runtime.Container) map[string]*runtime.Container {
	seen := map[string]int{}
	out := map[string]*runtime.Container{}
	for _, c := range cs {
		seen[c.Name]++
		if seen[c.Name] == 2 {
			out[c.Name] = c
		}
	}
	return out
}

// removeDeadContainers keeps the newest and the previous instance of each container (the
// previous one's logs are `logs --previous`) and removes older exited ones.
func (k *Kubelet) removeDeadContainers(ctx context.Context, cs []*runtime.Container) error {
	seen := map[string]int{}
	var errs []error
	for _, c := range cs {
		seen[c.Name]++
		if seen[c.Name] > 2 && c.State != runtime.ContainerRunning {
			if err := k.rt.RemoveContainer(ctx, c.ID); err != nil {
				errs = append(errs, err)
				continue
			}
			if c.LogPath != "" {
				_ = os.Remove(c.LogPath)
			}
		}
	}
	return errors.Join(errs...)
}

// startOrBackOff starts container c (its first instance, or the next after cur exited),
// unless a back-off holds it; it returns when to look again.
func (k *Kubelet) startOrBackOff(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *runtime.Container, sb *runtime.Sandbox, rec *podRecord) time.Duration {
	cr := rec.container(c.GetName())
	now := time.Now()
	if now.Before(cr.retryAt) {
		if cr.waitingReason == reasonErrImagePull {
			cr.waitingReason = reasonImagePullBackOff
			cr.waitingMessage = fmt.Sprintf("Back-off pulling image %q", c.GetImage())
			k.recorder.Eventf(pod, "Normal", "BackOff", "Back-off pulling image %q", c.GetImage())
		}
		return cr.retryAt.Sub(now)
	}
	attempt := 0
	if cur != nil {
		attempt = cur.Attempt + 1
		if cur.State == runtime.ContainerExited {
			// A container that ran long enough has earned a fresh back-off.
			if !cur.StartedAt.IsZero() && cur.FinishedAt.Sub(cur.StartedAt) > 2*k.cfg.BackoffMax {
				cr.crashBackoff = 0
			}
			if cr.crashBackoff > 0 {
				if wait := cur.FinishedAt.Add(cr.crashBackoff).Sub(now); wait > 0 {
					if cr.waitingReason != reasonCrashLoopBackOff {
						k.recorder.Eventf(pod, "Warning", "BackOff", "Back-off restarting failed container %s in pod %s", c.GetName(), pod.GetMetadata().GetName())
					}
					cr.waitingReason = reasonCrashLoopBackOff
					cr.waitingMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
						cr.crashBackoff, c.GetName(), pod.GetMetadata().GetName(), pod.GetMetadata().GetNamespace(), pod.GetMetadata().GetUid())
					return wait
				}
			}
		}
		if cur.State == runtime.ContainerCreated {
			// Created but never started (a start that failed): replace it.
			_ = k.rt.RemoveContainer(ctx, cur.ID)
			attempt = cur.Attempt
		}
	}
	ref, reason, msg := k.ensureImage(ctx, pod, c, cr)
	if reason != "" {
		cr.waitingReason, cr.waitingMessage = reason, msg
		wait := k.retryLater(cr)
		if reason == reasonErrImagePull {
			// Look again soon: the status then shows ImagePullBackOff until the retry.
			wait = min(wait, time.Second)
		}
		return wait
	}
	cfg, err := k.containerConfig(pod, c, sb, attempt)
	if err != nil {
		cr.waitingReason, cr.waitingMessage = reasonCreateContainerConfigError, err.Error()
		k.recorder.Eventf(pod, "Warning", "Failed", "Error: %v", err)
		return k.retryLater(cr)
	}
	cfg.Image = ref
	id, err := k.rt.CreateContainer(ctx, sb, cfg)
	if err != nil {
		cr.waitingReason, cr.waitingMessage = reasonCreateContainerError, err.Error()
		k.recorder.Eventf(pod, "Warning", "Failed", "Error: %v", err)
		return k.retryLater(cr)
	}
	k.recorder.Eventf(pod, "Normal", "Created", "Created container %s", c.GetName())
	if err := k.rt.StartContainer(ctx, id); err != nil {
		cr.waitingReason, cr.waitingMessage = reasonRunContainerError, err.Error()
		k.recorder.Eventf(pod, "Warning", "Failed", "Error: %v", err)
		_ = k.rt.RemoveContainer(ctx, id)
		return k.retryLater(cr)
	}
	k.recorder.Eventf(pod, "Normal", "Started", "Started container %s", c.GetName())
	k.noteImageUse(ref)
	if cur != nil && cur.State == runtime.ContainerExited {
		cr.crashBackoff = k.nextBackoff(cr.crashBackoff)
	}
	cr.waitingReason, cr.waitingMessage, cr.retryBackoff = "", "", 0
	return 0
}

// retryLater sets the container's next attempt after its back-off and returns the delay.
func (k *Kubelet) retryLater(cr *containerRecord) time.Duration {
	cr.retryBackoff = k.nextBackoff(cr.retryBackoff)
	cr.retryAt = time.Now().Add(cr.retryBackoff)
	return cr.retryBackoff
}

// ensureImage makes the container's image present per its pull policy; on failure it returns
// the waiting reason and message Kubernetes shows.
func (k *Kubelet) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cr *containerRecord) (ref, reason, msg string) {
	ref, err := images.Normalize(c.GetImage())
	if err != nil {
		k.recorder.Eventf(pod, "Warning", "InspectFailed", "Failed to apply default image tag %q: %v", c.GetImage(), err)
		return "", reasonInvalidImageName, err.Error()
	}
	policy := c.GetImagePullPolicy()
	if policy == "" {
		policy = images.DefaultPullPolicy(c.GetImage())
	}
	_, err = k.rt.GetImage(ctx, ref)
	present := err == nil
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return "", reasonErrImagePull, err.Error()
	}
	switch {
	case policy == "Never" && !present:
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.GetImage())
		k.recorder.Event(pod, "Warning", reasonErrImageNeverPull, msg)
		return "", reasonErrImageNeverPull, msg
	case policy != "Always" && present:
		if cr.waitingReason == "" {
			k.recorder.Eventf(pod, "Normal", "Pulled", "Container image %q already present on machine", c.GetImage())
		}
		return ref, "", ""
	}
	k.recorder.Eventf(pod, "Normal", "Pulling", "Pulling image %q", c.GetImage())
	start := time.Now()
	log := k.log.With("pod", pod.GetMetadata().GetNamespace()+"/"+pod.GetMetadata().GetName(), "image", ref)
	img, err := k.rt.PullImage(ctx, ref, func(done, total int64) {
		log.Info("pulling image", "bytes", done, "of", total)
	})
	if err != nil {
		k.recorder.Eventf(pod, "Warning", "Failed", "Failed to pull image %q: %v", c.GetImage(), err)
		return "", reasonErrImagePull, err.Error()
	}
	k.recorder.Eventf(pod, "Normal", "Pulled", "Successfully pulled image %q in %s. Image size: %d bytes.",
		c.GetImage(), time.Since(start).Round(time.Millisecond), img.Size)
	return ref, "", ""
}
