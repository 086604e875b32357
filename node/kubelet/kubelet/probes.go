package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

type probeType string

const (
	liveness  probeType = "Liveness"
	readiness probeType = "Readiness"
	startup   probeType = "Startup"
)

type probeResult int

const (
	resultUnknown probeResult = iota
	resultSuccess
	resultFailure
)

type probeKey struct {
	containerID string
	typ         probeType
}

// prober runs containers' probes, one worker goroutine per container and probe type, and
// keeps their results; a result that changes queues the pod for a sync, which acts on it
// (readiness into status, liveness and startup failures into a restart).
type prober struct {
	k       *Kubelet
	mu      sync.Mutex
	workers map[probeKey]*probeWorker
	results map[probeKey]probeResult
	// hasProbe remembers which probes each running container has.
	hasProbe map[probeKey]bool
	wg       sync.WaitGroup
	client   *http.Client
}

type probeWorker struct {
	podUID string
	stop   chan struct{}
}

func newProber(k *Kubelet) *prober {
	return &prober{k: k, workers: map[probeKey]*probeWorker{}, results: map[probeKey]probeResult{}, hasProbe: map[probeKey]bool{},
		client: &http.Client{
			// Probes never follow redirects off the pod, and never keep connections.
			Transport:     &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // Kubernetes' HTTPS probes skip verification too
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
}

// sync starts workers for the pod's running containers' probes and stops the others.
func (p *prober) sync(pod *corev1.Pod, cs []*runtime.Container, podIP string) {
	specs := map[string]*corev1.Container{}
	for _, c := range pod.GetSpec().GetContainers() {
		specs[c.GetName()] = c
	}
	keep := map[string]bool{}
	for _, c := range cs {
		spec := specs[c.Name]
		if c.State != runtime.ContainerRunning || spec == nil {
			continue
		}
		keep[c.ID] = true
		for typ, pr := range map[probeType]*corev1.Probe{liveness: spec.GetLivenessProbe(), readiness: spec.GetReadinessProbe(), startup: spec.GetStartupProbe()} {
			if pr == nil {
				continue
			}
			key := probeKey{c.ID, typ}
			p.mu.Lock()
			_, running := p.workers[key]
			_, done := p.results[key]
			p.hasProbe[key] = true
			if !running && !(typ == startup && done && p.results[key] == resultSuccess) {
				w := &probeWorker{podUID: pod.GetMetadata().GetUid(), stop: make(chan struct{})}
				p.workers[key] = w
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					p.run(w, key, pod, spec, pr, c, podIP)
				}()
			}
			p.mu.Unlock()
		}
	}
	p.prunePod(pod.GetMetadata().GetUid(), keep)
}

// prunePod stops the workers of the pod's containers not in keep (nil: all) and forgets
// their results.
func (p *prober) prunePod(uid string, keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, w := range p.workers {
		if w.podUID == uid && !keep[key.containerID] {
			close(w.stop)
			delete(p.workers, key)
		}
	}
	for key := range p.hasProbe {
		if _, running := p.workers[key]; !running && !keep[key.containerID] {
			delete(p.hasProbe, key)
			delete(p.results, key)
		}
	}
}

// stopAll ends every worker and waits for them.
func (p *prober) stopAll() {
	p.mu.Lock()
	for key, w := range p.workers {
		close(w.stop)
		delete(p.workers, key)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *prober) result(id string, typ probeType) (probeResult, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := probeKey{id, typ}
	return p.results[key], p.hasProbe[key]
}

// started: no startup probe, or it has succeeded.
func (p *prober) started(id string) bool {
	r, has := p.result(id, startup)
	return !has || r == resultSuccess
}

// ready: started, and no readiness probe or it succeeds (a readiness probe starts failed).
func (p *prober) ready(id string) bool {
	if !p.started(id) {
		return false
	}
	r, has := p.result(id, readiness)
	return !has || r == resultSuccess
}

// shouldKill says why a running container must be restarted ("" if not).
func (p *prober) shouldKill(id string) string {
	if r, has := p.result(id, startup); has && r == resultFailure {
		return "failed startup probe"
	}
	if r, has := p.result(id, liveness); has && r == resultFailure {
		return "failed liveness probe"
	}
	return ""
}

// run is one worker: after the initial delay it probes every period and records the result
// once the success or failure threshold is crossed.
func (p *prober) run(w *probeWorker, key probeKey, pod *corev1.Pod, spec *corev1.Container, pr *corev1.Probe, c *runtime.Container, podIP string) {
	podKey := pod.GetMetadata().GetNamespace() + "/" + pod.GetMetadata().GetName()
	period := time.Duration(max(pr.GetPeriodSeconds(), 1)) * time.Second
	timeout := time.Duration(max(pr.GetTimeoutSeconds(), 1)) * time.Second
	successThreshold, failureThreshold := max(pr.GetSuccessThreshold(), 1), max(pr.GetFailureThreshold(), 1)
	initial := resultUnknown
	switch key.typ {
	case liveness:
		initial = resultSuccess
	case readiness:
		initial = resultFailure
	}
	p.set(key, initial, podKey)
	start := c.StartedAt
	if start.IsZero() {
		start = time.Now()
	}
	delay := time.Until(start.Add(time.Duration(pr.GetInitialDelaySeconds()) * time.Second))
	if delay > 0 {
		select {
		case <-w.stop:
			return
		case <-time.After(delay):
		}
	}
	successes, failures := int32(0), int32(0)
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		if key.typ == startup || p.started(c.ID) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			ok, msg := p.probe(ctx, pr, spec, c, podIP, w.stop)
			cancel()
			if ok {
				successes, failures = successes+1, 0
				if successes >= successThreshold {
					p.set(key, resultSuccess, podKey)
					if key.typ == startup {
						return // a startup probe is done once it succeeds
					}
				}
			} else {
				failures, successes = failures+1, 0
				p.k.recorder.Eventf(pod, "Warning", "Unhealthy", "%s probe failed: %s", key.typ, msg)
				if failures >= failureThreshold {
					p.set(key, resultFailure, podKey)
				}
			}
		}
		select {
		case <-w.stop:
			return
		case <-ticker.C:
		}
	}
}

func (p *prober) set(key probeKey, r probeResult, podKey string) {
	p.mu.Lock()
	old, had := p.results[key]
	p.results[key] = r
	p.mu.Unlock()
	if !had || old != r {
		p.k.queue.Add(podKey)
	}
}

// probe runs one probe: an HTTP GET (2xx or 3xx passes), a TCP connect, or a command in the
// container (exit 0 passes).
func (p *prober) probe(ctx context.Context, pr *corev1.Probe, spec *corev1.Container, c *runtime.Container, podIP string, stop <-chan struct{}) (bool, string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	switch {
	case pr.GetExec() != nil:
		code, err := p.k.rt.Exec(ctx, c.ID, runtime.ExecOptions{Cmd: pr.GetExec().GetCommand(), Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			return false, err.Error()
		}
		if code != 0 {
			return false, fmt.Sprintf("command %q exited with %d", strings.Join(pr.GetExec().GetCommand(), " "), code)
		}
		return true, ""
	case pr.GetHttpGet() != nil:
		h := pr.GetHttpGet()
		port, err := resolvePort(h.GetPort(), spec)
		if err != nil {
			return false, err.Error()
		}
		host := h.GetHost()
		if host == "" {
			host = podIP
		}
		scheme := strings.ToLower(h.GetScheme())
		if scheme == "" {
			scheme = "http"
		}
		path := h.GetPath()
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
		if err != nil {
			return false, err.Error()
		}
		req.Header.Set("User-Agent", "kube-probe/skiff")
		for _, hh := range h.GetHttpHeaders() {
			req.Header.Set(hh.GetName(), hh.GetValue())
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return true, ""
	case pr.GetTcpSocket() != nil:
		t := pr.GetTcpSocket()
		port, err := resolvePort(t.GetPort(), spec)
		if err != nil {
			return false, err.Error()
		}
		host := t.GetHost()
		if host == "" {
			host = podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	return false, "probe has no handler"
}

// resolvePort turns a probe's port (a number or a container port's name) into a number.
func resolvePort(port *metav1.IntOrString, spec *corev1.Container) (int, error) {
	if name := port.GetStrVal(); name != "" {
		if n, err := strconv.Atoi(name); err == nil {
			return n, nil
		}
		for _, cp := range spec.GetPorts() {
			if cp.GetName() == name {
				return int(cp.GetContainerPort()), nil
			}
		}
		return 0, fmt.Errorf("no container port named %q", name)
	}
	if n := port.GetIntVal(); n > 0 {
		return int(n), nil
	}
	return 0, fmt.Errorf("probe has no port")
}
