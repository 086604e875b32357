package kubelet

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/resource"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// terminatedState describes an exited container as Kubernetes does: reason Completed for
// exit 0, OOMKilled for a memory kill, Error otherwise.
func terminatedState(c *runtime.Container) *corev1.ContainerState {
	reason := c.Reason
	if reason == "" {
		reason = "Error"
		if c.ExitCode == 0 {
			reason = "Completed"
		}
	}
	return &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: c.ExitCode, Reason: reason, StartedAt: rfc3339(c.StartedAt), FinishedAt: rfc3339(c.FinishedAt),
		ContainerId: "containerd://" + c.ID,
	}}
}

// containerStatus is one container's status from its newest and previous instances.
func (k *Kubelet) containerStatus(pod *corev1.Pod, c *corev1.Container, cur, prev *runtime.Container, rec *podRecord, initContainer bool) *corev1.ContainerStatus {
	cs := &corev1.ContainerStatus{Name: c.GetName(), Image: c.GetImage(), Started: proto.Bool(false)}
	cr := rec.container(c.GetName())
	if prev != nil && prev.State == runtime.ContainerExited {
		cs.LastState = terminatedState(prev)
	}
	switch {
	case cur == nil:
		reason := reasonContainerCreating
		cs.State = &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
		if cr.waitingReason != "" {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: cr.waitingReason, Message: cr.waitingMessage}
		}
		return cs
	}
	cs.RestartCount = int32(cur.Attempt)
	cs.ImageId = cur.ImageID
	cs.ContainerId = "containerd://" + cur.ID
	switch cur.State {
	case runtime.ContainerRunning:
		cs.State = &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: rfc3339(cur.StartedAt)}}
		started := k.prober.started(cur.ID)
		cs.Started = proto.Bool(started)
		cs.Ready = started && k.prober.ready(cur.ID)
	case runtime.ContainerExited:
		restarting := shouldRestart(pod.GetSpec().GetRestartPolicy(), cur.ExitCode)
		if initContainer && cur.ExitCode == 0 {
			restarting = false
		}
		if restarting {
			// About to restart (or backing off): waiting, with the exit as last state.
			cs.LastState = terminatedState(cur)
			reason, msg := cr.waitingReason, cr.waitingMessage
			if reason == "" {
				reason = reasonContainerCreating
			}
			cs.State = &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
		} else {
			cs.State = terminatedState(cur)
		}
	default:
		reason, msg := cr.waitingReason, cr.waitingMessage
		if reason == "" {
			reason = reasonContainerCreating
		}
		cs.State = &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	}
	return cs
}

// computeStatus is the pod's status from what runs: phase, conditions, IPs, container
// statuses, as Kubernetes' kubelet computes them.
func (k *Kubelet) computeStatus(pod *corev1.Pod, sb *runtime.Sandbox, cs []*runtime.Container, rec *podRecord) *corev1.PodStatus {
	old := pod.GetStatus()
	st := &corev1.PodStatus{HostIp: k.cfg.NodeIP, StartTime: old.GetStartTime(), QosClass: qosClass(pod)}
	if st.StartTime == "" {
		st.StartTime = rfc3339(time.Now())
	}
	if sb != nil && sb.IP != "" {
		st.PodIp, st.PodIps = sb.IP, []*corev1.PodIP{{Ip: sb.IP}}
	}
	latest, prev := latestByName(cs), previousByName(cs)
	spec := pod.GetSpec()
	initialized, initFailed := true, false
	for _, c := range spec.GetInitContainers() {
		s := k.containerStatus(pod, c, latest[c.Name], prev[c.Name], rec, true)
		st.InitContainerStatuses = append(st.InitContainerStatuses, s)
		if t := s.GetState().GetTerminated(); t == nil || t.ExitCode != 0 {
			initialized = false
			if t != nil && spec.GetRestartPolicy() == "Never" {
				initFailed = true
			}
		}
	}
	allReady := len(spec.GetContainers()) > 0
	for _, c := range spec.GetContainers() {
		s := k.containerStatus(pod, c, latest[c.Name], prev[c.Name], rec, false)
		if !initialized && s.State.GetWaiting() != nil && s.State.Waiting.Reason == reasonContainerCreating {
			s.State.Waiting.Reason = reasonPodInitializing
		}
		st.ContainerStatuses = append(st.ContainerStatuses, s)
		allReady = allReady && s.Ready
	}
	st.Phase = podPhase(spec.GetRestartPolicy(), st.ContainerStatuses)
	if initFailed {
		st.Phase = "Failed"
	} else if !initialized {
		st.Phase = "Pending"
	}
	if sb == nil && rec.sandboxError != "" {
		st.Reason, st.Message = "", "Failed to create pod sandbox: "+rec.sandboxError
	}
	ready := allReady && st.Phase == "Running"
	cond := func(t string, ok bool, reason string) *corev1.PodCondition {
		c := &corev1.PodCondition{Type: t, Status: "False", Reason: reason}
		if ok {
			c.Status, c.Reason = "True", ""
		}
		c.LastTransitionTime = rfc3339(time.Now())
		for _, o := range old.GetConditions() {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	notReady := "ContainersNotReady"
	if !initialized {
		notReady = "ContainersNotInitialized"
	}
	if st.Phase == "Succeeded" || st.Phase == "Failed" {
		notReady = "PodCompleted"
	}
	initReason := ""
	if !initialized {
		initReason = "ContainersNotInitialized"
	}
	st.Conditions = []*corev1.PodCondition{
		cond("PodReadyToStartContainers", sb != nil && sb.State == runtime.SandboxReady, ""),
		cond("Initialized", initialized, initReason),
		cond("Ready", ready, notReady),
		cond("ContainersReady", ready, notReady),
		cond("PodScheduled", true, ""),
	}
	for _, o := range old.GetConditions() {
		// Conditions others own (readiness gates, DisruptionTarget) are kept.
		switch o.Type {
		case "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled":
		default:
			st.Conditions = append(st.Conditions, o)
		}
	}
	return st
}

// podPhase is Kubernetes' getPhase for the regular containers.
func podPhase(policy string, statuses []*corev1.ContainerStatus) string {
	var waiting, running, stopped, succeeded int
	for _, s := range statuses {
		switch {
		case s.State.GetRunning() != nil:
			running++
		case s.State.GetTerminated() != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.GetWaiting() != nil:
			if s.LastState.GetTerminated() != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return "Pending"
	case running > 0:
		return "Running"
	case stopped > 0:
		if policy == "Always" {
			return "Running"
		}
		if stopped == succeeded {
			return "Succeeded"
		}
		if policy == "Never" {
			return "Failed"
		}
		return "Running"
	}
	return "Pending"
}

// qosClass is the pod's quality of service class: Guaranteed when every container's cpu and
// memory limits equal their requests, BestEffort when none has any, Burstable otherwise.
func qosClass(pod *corev1.Pod) string {
	any, guaranteed := false, true
	for _, c := range append(append([]*corev1.Container{}, pod.GetSpec().GetInitContainers()...), pod.GetSpec().GetContainers()...) {
		r := c.GetResources()
		if len(r.GetRequests())+len(r.GetLimits()) > 0 {
			any = true
		}
		for _, name := range []string{"cpu", "memory"} {
			l, ok := r.GetLimits()[name]
			if !ok {
				guaranteed = false
				continue
			}
			req, ok := r.GetRequests()[name]
			if !ok {
				req = l
			}
			lq, err1 := resource.ParseQuantity(l)
			rq, err2 := resource.ParseQuantity(req)
			if err1 != nil || err2 != nil || !lq.Equal(rq) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return "BestEffort"
	case guaranteed:
		return "Guaranteed"
	}
	return "Burstable"
}

// writeStatus writes st as the pod's status if it differs from what is stored; a conflict is
// retried on the current object (status is the kubelet's alone).
func (k *Kubelet) writeStatus(ctx context.Context, pod *corev1.Pod, st *corev1.PodStatus) error {
	if proto.Equal(pod.GetStatus(), st) {
		return nil
	}
	p := proto.Clone(pod).(*corev1.Pod)
	p.Status = st
	for attempt := 0; ; attempt++ {
		_, err := k.client.UpdateStatus(ctx, p)
		if err == nil {
			k.metrics.statusWrites.Inc()
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 3 {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("write status of %s: %w", pod.GetMetadata().GetName(), err)
		}
		obj, gerr := k.client.Get(ctx, k.podsKind, pod.GetMetadata().GetNamespace(), pod.GetMetadata().GetName())
		if gerr != nil {
			return gerr
		}
		p = obj.(*corev1.Pod)
		if p.GetMetadata().GetUid() != pod.GetMetadata().GetUid() {
			return nil
		}
		p.Status = st
	}
}
