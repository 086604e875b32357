# Skiff's entry points. The README's quick start is `make up` and `make test`.
SHELL := /bin/bash
GOBIN ?= $(shell go env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build up node-deps images bench-up test test-short test-unit test-node test-clientgo fuzz-clientgo fuzz generate generate-bpf verify-generate tools bench bench-bus bench-publisher bench-scheduler bench-services bench-kubelet bench-controllers bench-peer compose-up compose-down test-compose vet fmt clean

all: build

## build: every binary into bin/ (bin/skiff, bin/apiserver, ...)
build:
	@mkdir -p bin
	go build -o bin/ ./...

## up: build bin/skiff and run the whole cluster in one process (embedded etcd and NATS, the proxy, DNS
## and a local node that has bin/images preloaded). As root it first installs what the node
## needs from Debian's packages (hack/install-node-deps.sh) and mounts bpffs; UP_FLAGS adds
## flags to `skiff up` (e.g. UP_FLAGS=--data-dir=/tmp/x)
up: bin/skiff node-deps images
	./bin/skiff up $(UP_FLAGS)

# bin/skiff is rebuilt only when a Go file, go.mod or go.sum changed: a no-op `go build` still
# hashes the whole dependency graph (4-8 s on a busy 2-core machine), which `make up` from a
# built tree should not pay. (touch: go build leaves an up-to-date binary's time alone.)
GO_SRCS := $(shell find . \( -path ./bin -o -path ./.skiff -o -path ./.git \) -prune -o -name '*.go' -print)
bin/skiff: $(GO_SRCS) go.mod go.sum
	@mkdir -p bin
	go build -o bin/ ./cmd/skiff && touch bin/skiff

## node-deps: as root, install containerd, runc, the CNI plugins and busybox-static if missing
## and mount bpffs; otherwise say that skiff up will run the control plane alone
node-deps:
	@if [ "$$(id -u)" = 0 ]; then ./hack/install-node-deps.sh && ./hack/mount-bpffs.sh; \
	else echo "make up: not root: no local node or service proxy (run as root for pods)"; fi

## images: the image tarballs, made with no registry and no base image: bin/images/demo.tar
## (skiff-demo:v1) and bin/images/busybox.tar (skiff-busybox:v1, from Debian's busybox-static);
## remade only when their sources change
IMAGE_SRCS := $(shell find deploy/images hack/build-images internal/imagebuild -name '*.go' 2>/dev/null)
images: bin/images/demo.tar
bin/images/demo.tar: $(IMAGE_SRCS)
	go run ./hack/build-images -out bin/images

## test: what CI runs: vet, every test against real etcd/NATS (kubectl's included), short fuzzing
## of manifest decoding, quantities and the REST front, and the client-go module's tests
test: vet test-unit fuzz test-clientgo test-compose

## test-short: the edit-test loop (about a minute): vet and every test with -short, which skips
## the end-to-end tests that build and kill real server processes, and the fuzzing
test-short: vet
	go test -short -count=1 -timeout 10m ./...

# The crash test's summary (kills, writes, events checked, lost/duplicated/reordered) is
# printed after the run; go test shows a passing test's output only with -v.
test-unit:
	@rm -f .e2e-summary
	SKIFF_COMPOSE_TESTS= SKIFF_E2E_SUMMARY=$(CURDIR)/.e2e-summary go test -count=1 -timeout 25m ./...
	@cat .e2e-summary 2>/dev/null || true

## test-node: the kubelet's tests on real containerd and the quick start against skiff up
## (TestUpDemoWorkflow) (root, containerd, runc, CNI plugins, busybox-static, iptables;
## hack/install-node-deps.sh installs them on Debian); fails rather than skips
test-node:
	SKIFF_NODE_TESTS=require go test -count=1 -timeout 15m ./node/... ./internal/up/
	SKIFF_NODE_TESTS=require go test -count=1 -timeout 10m -run '^TestUpDemoWorkflow$$' ./test/e2e/

## test-clientgo: client-go's informers and listers against Skiff, and differential (fuzzed) tests of
## Skiff's selectors, quantities and JSON against k8s.io/apimachinery and k8s.io/api, in their own
## module (test/clientgo) so that the main module never depends on k8s.io. Building client-go
## takes minutes on two cores the first time; the module and build caches keep it after.
test-clientgo:
	cd test/clientgo && go vet ./... && go test -count=1 -timeout 15m ./...

## fuzz-clientgo: the differential fuzzers for longer than their seed corpus (which test-clientgo
## runs); not in `make test`: their instrumented build of client-go takes ~10 minutes on 2 cores
fuzz-clientgo:
	cd test/clientgo && for f in FuzzLabelSelector FuzzFieldSelector FuzzQuantity FuzzJSONShapes; do \
		go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=5s . || exit 1; done

# Budgets are executions, not seconds: a duration -fuzztime races its deadline against busy
# workers and fails with "context deadline exceeded" and no input (golang/go#75804, fixed in Go 1.27).
fuzz:
	go test ./pkg/codec -run='^$$' -fuzz=FuzzDecodeManifests -fuzztime=10000x
	go test ./pkg/apis/resource -run='^$$' -fuzz=FuzzParseQuantity -fuzztime=30000x
	go test ./services/apiserver/apiserver -run='^$$' -fuzz=FuzzRESTFront -fuzztime=5000x

vet:
	@go mod tidy -diff >/dev/null || (echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1)
	@cd test/clientgo && go mod tidy -diff >/dev/null || (echo "test/clientgo's go.mod/go.sum are not tidy: cd test/clientgo && go mod tidy"; exit 1)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	go vet ./...

## generate: regenerate Go, gRPC, gateway and OpenAPI code from proto/ with local plugins
generate: tools
	buf lint
	buf generate

## verify-generate: fail if `make generate` would change committed generated code
verify-generate: generate
	@git diff --exit-code -- pkg/apis services/apiserver/openapi || \
		(echo "generated code is stale: run 'make generate' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- pkg/apis services/apiserver/openapi)" || \
		(echo "generate produced untracked files:"; git status --porcelain -- pkg/apis services/apiserver/openapi; exit 1)

## generate-bpf: recompile the proxy's BPF programs (node/proxy-ebpf/proxy/lb.c) with bpf2go;
## the objects are committed, so only a change to lb.c needs it (clang, llvm-strip, libbpf-dev:
## hack/install-bpf-tools.sh)
generate-bpf:
	cd node/proxy-ebpf/proxy && go generate ./...

tools:
	./hack/install-tools.sh

## bench: apiserver create/get/list against raw etcd on the same etcd, with ratios
bench:
	go test ./test/bench/ -run='^$$' -bench=. -benchtime=1000x -count=1 -timeout 20m

## bench-bus: the live feed alone (100 readers: shared bus.Live vs one JetStream consumer each),
## event-bus fan-out (1/100/1000 informers vs direct etcd watches, etcd CPU) and
## node-scoped fan-out (1,000 kubelets, 10,000 bindings)
bench-bus:
	go test ./pkg/bus/ -run='^$$' -bench=LiveFanout -benchtime=1x -timeout 10m
	go test ./test/e2e/ -run='^$$' -bench=Fanout -benchtime=1x -timeout 30m

## bench-scheduler: scheduling throughput end to end (apiserver + etcd fsync + bus) at 100, 1,000
## and 5,000 Node objects for basic, node-affinity and pod-anti-affinity pods, where the time goes,
## the cache's memory, and the goal lines (SKIFF_BENCH_NODES=100,1000 for a shorter run)
bench-scheduler:
	go test ./services/scheduler/scheduler/ -run='^$$' -bench=Scheduling -benchtime=1x -timeout 30m

## bench-publisher: the publisher's latency and throughput: one bus informer beside a direct etcd
## watch on the same writes at 1,000/s (goal: bus p99 within 2x), then etcd's maximum write rate
## at 16 and 64 writers with node copies, and a backlog drain (goal: the publisher keeps up)
bench-publisher:
	go test ./test/e2e/ -run='^$$' -bench='BusOneReader|PublisherThroughput' -benchtime=1x -timeout 20m

## bench-services (root): 10,000 services x 10 backends into the BPF maps from cold against
## kube-proxy's iptables rules (iptables-restore, legacy at 10k and nf_tables at 1k), connect
## latency through a VIP against direct, Endpoints change to map update, DNS queries/s
bench-services:
	go test ./node/proxy-ebpf/proxy/ -run='^$$' -bench='ProgramMaps|ConnectLatency|EndpointsToMap' -benchtime=1x -count=1 -timeout 20m
	go test ./services/dns/dns/ -run='^$$' -bench=Queries -benchtime=1x -count=1 -timeout 5m

## bench-up (root): `make up` in a built tree to the demo's first answer through its cluster IP,
## and the idle RSS of skiff up with the demo running (goal lines; baselines: skiff up without
## make, and a bare control plane)
bench-up:
	SKIFF_NODE_TESTS=require go test ./test/e2e/ -run='^$$' -bench=UpToFirstAnswer -benchtime=1x -count=1 -timeout 15m

## bench-kubelet: pod startup latency (Kubernetes' SLI) on one real node, 30 pods, beside raw
## containerd create+start of the same image; idle kubelet RSS and CPU with 30 pods
bench-kubelet:
	SKIFF_NODE_TESTS=require go test ./node/kubelet/kubelet/ -run='^$$' -bench=PodStartup -benchtime=1x -count=1 -timeout 15m

## bench-controllers: a Deployment of 1,000 replicas on 100 Node objects through the real
## apiserver and bus with the scheduler, the controllers and the simulated kubelet: time to
## 1,000 bound and ready, a rolling update, and readiness -> Endpoints latency (goal lines)
bench-controllers:
	go test ./services/rs-controller/manager/ -run='^$$' -bench=Controllers -benchtime=1x -timeout 20m

## compose-up: the multi-node deployment in Docker (deploy/compose): builds the images (no
## registry, no base image), starts etcd x3, NATS x3, 2 apiservers, the controllers, DNS and the
## nodes node1 and node2, and returns once both nodes are Ready (docs/deploy.md)
compose-up: images
	deploy/compose/up.sh

## compose-down: stops the compose deployment and removes its containers, network and volumes
compose-down:
	docker-compose -p skiff -f deploy/compose/docker-compose.yml down -v --remove-orphans

## test-compose: the end-to-end test against the compose deployment (Docker and docker-compose;
## skipped without them unless SKIFF_COMPOSE_TESTS=require, as CI sets); it brings the
## deployment up and removes it after
test-compose: images
	SKIFF_COMPOSE_TESTS=$${SKIFF_COMPOSE_TESTS:-1} go test -count=1 -timeout 15m -run '^TestCompose$$' -v ./test/e2e/

## bench-peer: Skiff side by side with a real kube-apiserver (built from k8s.io/kubernetes in the
## separate module test/peer/kube, once, cached in ~/.cache/skiff-peer; the first build took
## 79 minutes on this loaded 2-core machine) on the same etcd: request path (create/get/update/list of 1,000 vs raw etcd) and
## informer fan-out at 1 and 100 informers x 1,000 writes/s, node-scoped fan-out (1,000 node agents,
## 10,000 binds at 1,000/s), CPU and memory, goal lines. SKIFF_PEER_PARTS=request,fanout,nodefan,sched picks parts.
## SKIFF_PEER_QUICK=1: a short run; SKIFF_PEER_WIDE=1 adds 1,000 informers x 100 writes/s
bench-peer:
	hack/build-peer.sh >/dev/null
	go test ./test/e2e/ -run='^$$' -bench='^BenchmarkPeer$$' -benchtime=1x -count=1 -timeout 60m

clean:
	rm -rf bin .skiff
