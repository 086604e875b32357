package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// BenchmarkUpToFirstAnswer is the user's figure for the quick start: from `make up` in a built
// tree (bin/skiff and bin/images up to date, so make's build steps find nothing to do) to the first
// answer of the demo Service through its cluster IP, with `skiff apply -f
// deploy/examples/demo.yaml` run as soon as the banner says what to run; then the idle RSS of
// the `skiff up` process with the demo's 3 pods running (the whole control plane: etcd, NATS,
// the apiserver, scheduler, controllers, DNS, the proxy and the kubelet; containerd, its shims
// and the pods are separate processes, reported beside it and not counted). Baselines in the
// same run: `./bin/skiff up` started directly (what make adds), and the RSS of a bare `skiff up
// --local-node=false --proxy=false` with no objects (what the node, the proxy and the demo add).
// Root, containerd, runc and the CNI plugins (hack/install-node-deps.sh) are needed.
func BenchmarkUpToFirstAnswer(b *testing.B) {
	nodetest.RequireRoot(b)
	root, err := nodetest.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	// A built tree.
	prep := exec.Command("make", "bin/skiff", "images")
	prep.Dir = root
	if out, err := prep.CombinedOutput(); err != nil {
		b.Fatalf("make bin/skiff images: %v\n%s", err, out)
	}
	for range b.N {
		viaMake := runUpOnce(b, root, true, true)
		direct := runUpOnce(b, root, false, true)
		bare := runUpOnce(b, root, false, false)
		b.Logf("make up: %s", viaMake)
		b.Logf("./bin/skiff up: %s", direct)
		b.Logf("bare control plane: %s", bare)
		fmt.Printf("make up -> banner %.2f s (make's no-op build and node checks %.2f s, skiff up's start %.2f s); apply -> first answer %.2f s; total %.2f s\n",
			viaMake.banner.Seconds(), viaMake.makeSteps.Seconds(), viaMake.banner.Seconds()-viaMake.makeSteps.Seconds(),
			(viaMake.firstAnswer - viaMake.banner).Seconds(), viaMake.firstAnswer.Seconds())
		fmt.Printf("./bin/skiff up (no make) -> first answer %.2f s; make up / direct = %.2fx\n",
			direct.firstAnswer.Seconds(), viaMake.firstAnswer.Seconds()/direct.firstAnswer.Seconds())
		fmt.Printf("idle RSS with the demo's 3 pods: skiff up %.1f MiB (bare control plane, no node/proxy/objects: %.1f MiB, %.2fx); not counted: containerd + shims + pods %.1f MiB\n",
			mib(viaMake.rss), mib(bare.rss), float64(viaMake.rss)/float64(bare.rss), mib(viaMake.nodeRSS))
		met := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		fmt.Printf("goal: make up to the demo's first answer through its cluster IP, built tree, under 10 s: %.2f s %s\n",
			viaMake.firstAnswer.Seconds(), met(viaMake.firstAnswer < 10*time.Second))
		fmt.Printf("goal: idle RSS of skiff up (the whole control plane and node agent) with the demo running under 200 MiB: %.1f MiB %s\n",
			mib(viaMake.rss), met(viaMake.rss < 200<<20))
		b.ReportMetric(viaMake.firstAnswer.Seconds(), "s-to-first-answer")
		b.ReportMetric(mib(viaMake.rss), "MiB-rss")
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

type upRun struct {
	makeSteps   time.Duration // make up started -> skiff up started
	banner      time.Duration // -> the banner's last line
	firstAnswer time.Duration // -> the demo answered through its cluster IP
	rss         int64         // skiff up's VmRSS after idling with the demo
	nodeRSS     int64         // containerd, its shims and the pods
}

func (r upRun) String() string {
	return fmt.Sprintf("skiff started %s, banner %s, first answer %s, rss %.1f MiB, node rss %.1f MiB",
		r.makeSteps, r.banner, r.firstAnswer, mib(r.rss), mib(r.nodeRSS))
}

// runUpOnce starts skiff up (through make, or the binary directly) on a fresh data dir and
// free ports; with demo it applies the demo as soon as the banner ends and waits for its first
// answer; then it idles 10 s, reads the RSS figures and stops it with SIGTERM.
func runUpOnce(b *testing.B, root string, viaMake, demo bool) upRun {
	b.Helper()
	dir := nodetest.ShortTempDir(b)
	port := func() string {
		p, err := proc.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		return strconv.Itoa(p)
	}
	grpc := "127.0.0.1:" + port()
	flags := []string{"--data-dir=" + filepath.Join(dir, "d"), "--http-addr=127.0.0.1:" + port(), "--grpc-addr=" + grpc,
		"--etcd-addr=127.0.0.1:" + port(), "--nats-addr=127.0.0.1:" + port(), "--dns-addr=0.0.0.0:" + port(),
		"--node-name=bench-" + filepath.Base(dir)[2:], "--pod-cidr=" + nodetest.PodCIDR(b),
		fmt.Sprintf("--service-cluster-ip-range=10.%d.%d.0/24", 120+rand.IntN(4), rand.IntN(256))}
	if !demo {
		flags = append(flags, "--local-node=false", "--proxy=false")
	}
	var cmd *exec.Cmd
	if viaMake {
		cmd = exec.Command("make", "up", "UP_FLAGS="+strings.Join(flags, " "))
	} else {
		cmd = exec.Command("./bin/skiff", append([]string{"up"}, flags...)...)
	}
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	var r upRun
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var banner []string
	timeout := time.After(2 * time.Minute)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				b.Fatalf("skiff up exited: %v\n%s\n%s", cmd.Wait(), strings.Join(banner, "\n"), tail(logf.Name(), 20))
			}
			banner = append(banner, l)
			if strings.HasPrefix(l, "Skiff is up in ") {
				took, _ := time.ParseDuration(strings.Fields(strings.TrimPrefix(l, "Skiff is up in "))[0])
				r.makeSteps = time.Since(start) - took
			}
			done = strings.HasPrefix(l, "Stop with Ctrl-C")
		case <-timeout:
			b.Fatalf("no banner in 2 minutes:\n%s", strings.Join(banner, "\n"))
		}
	}
	r.banner = time.Since(start)
	go func() {
		for range lines {
		}
	}()
	pid := skiffUpPid(filepath.Join(dir, "d"))
	if pid == 0 {
		b.Fatal("the skiff up process is not found")
	}
	stop := func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			b.Fatal("skiff up did not stop in 90 s")
		}
	}
	defer stop()
	if demo {
		skiff := filepath.Join(root, "bin", "skiff")
		apply := exec.Command(skiff, "--server", grpc, "apply", "-f", "deploy/examples/demo.yaml")
		apply.Dir = root
		if out, err := apply.CombinedOutput(); err != nil {
			b.Fatalf("apply: %v: %s", err, out)
		}
		var ip string
		deadline := time.Now().Add(time.Minute)
		for {
			if ip == "" {
				out, _ := exec.Command(skiff, "--server", grpc, "get", "service", "demo").Output()
				if f := strings.Fields(strings.SplitN(string(out)+"\n", "\n", 3)[1]); len(f) > 2 {
					ip = f[2]
				}
			}
			if ip != "" {
				if name, err := get("http://" + ip + "/"); err == nil && strings.HasPrefix(name, "demo-") {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("the demo did not answer through its cluster IP %q within a minute", ip)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.firstAnswer = time.Since(start)
	}
	// Idle: the pods Ready, their probes running, the informers settled.
	time.Sleep(10 * time.Second)
	r.rss = vmRSS(pid)
	if demo {
		for _, p := range nodeProcesses(filepath.Join(dir, "d")) {
			r.nodeRSS += vmRSS(p)
		}
	}
	return r
}

// skiffUpPid finds the `skiff up` process serving dataDir.
func skiffUpPid(dataDir string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "skiff") && args[1] == "up" && strings.Contains(string(b), "--data-dir="+dataDir) {
			return pid
		}
	}
	return 0
}

// nodeProcesses are the local node's containerd (its command line names the data dir), the
// shims serving it and every descendant of those (the pods' processes).
func nodeProcesses(dataDir string) []int {
	parent := map[int]int{}
	var roots []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if c := string(cmdline); strings.Contains(c, dataDir) && (strings.HasPrefix(c, "containerd") || strings.Contains(c, "/containerd")) &&
			!strings.Contains(c, "skiff") {
			roots = append(roots, pid)
		}
	}
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	var out []int
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

// vmRSS is a process's resident set in bytes (0 if it is gone).
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
