//go:build ignore

// Socket-level load balancing for Services' cluster IPs, on the cgroup2 socket hooks.
//
// connect4 and sendmsg4 rewrite the destination of a socket that addresses a service (VIP,
// port, protocol) to one of its ready backends, picked in strict rotation by a per-service
// counter; the translation is then done once per connection (TCP, connected UDP) or per
// datagram (unconnected UDP), never per packet. recvmsg4 and getpeername4 translate the
// backend's address back to the service's, so replies and the peer name show the VIP.
//
// A service with no ready backend, and any address of the service range that is no
// service, is refused at once with ECONNREFUSED: such traffic must never leave the node.
//
// Compiled by bpf2go (see gen.go); clang 14 needs -mcpu=v3 for an atomic fetch-add whose
// result is used.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ECONNREFUSED 111

// Sizes are part of the pinned maps' identity: a loader with other sizes cannot reuse them.
#define MAX_SERVICES 65536
#define MAX_BACKENDS 524288
#define MAX_REVNAT 262144

// A service port: its VIP and port (network byte order) and IP protocol.
struct service_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

// id indexes the service's rotation counter and backend slots; count is how many backends
// are in slots 0..count-1 (0: refuse).
struct service_value {
	__u32 id;
	__u32 count;
};

struct backend_key {
	__u32 id;
	__u32 slot;
};

struct backend_value {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

// What a socket was translated to, to translate replies and getpeername back.
struct revnat_key {
	__u64 cookie;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct revnat_value {
	__u32 vip;
	__u16 port;
	__u16 pad;
};

// A backend of one service port, for its traffic counter.
struct stats_key {
	__u32 id;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

// The service range, to refuse its addresses that are no service.
struct config_value {
	__u32 net;  // network byte order
	__u32 mask; // network byte order; 0: no range configured
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key);
	__type(value, struct service_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct backend_key);
	__type(value, struct backend_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_backends SEC(".maps");

// The rotation counter of each service id: kept apart from the services map so that
// rewriting a service's entry does not restart its rotation. Where a rotation starts does
// not matter, so a new service's counter is never reset.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_rr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_REVNAT);
	__type(key, struct revnat_key);
	__type(value, struct revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_revnat SEC(".maps");

// Connections (TCP, connected UDP) and datagrams (unconnected UDP) sent to each backend,
// per CPU. A backend's first connection creates its entry (so programming a service costs
// no write here); the loader deletes the entries of backends it removes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct stats_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skiff_config SEC(".maps");

static __always_inline int refuse(void)
{
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

static __always_inline int in_service_range(__u32 ip)
{
	__u32 zero = 0;
	struct config_value *cfg = bpf_map_lookup_elem(&skiff_config, &zero);
	return cfg && cfg->mask && (ip & cfg->mask) == cfg->net;
}

// translate points ctx at a backend of the service it addresses. It returns 1 to let the
// call go on (translated, or no service address) and 0 to refuse it.
static __always_inline int translate(struct bpf_sock_addr *ctx)
{
	struct service_key key = {
		.vip = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct service_value *svc = bpf_map_lookup_elem(&skiff_services, &key);
	if (!svc)
		return in_service_range(key.vip) ? refuse() : 1;
	__u32 count = svc->count;
	__u32 id = svc->id;
	if (count == 0)
		return refuse();
	__u32 *counter = bpf_map_lookup_elem(&skiff_rr, &id);
	if (!counter)
		return refuse();
	__u32 n = __sync_fetch_and_add(counter, 1);
	struct backend_key bkey = { .id = id, .slot = n % count };
	struct backend_value *be = bpf_map_lookup_elem(&skiff_backends, &bkey);
	if (!be)
		return refuse();

	struct revnat_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.ip = be->ip,
		.port = be->port,
	};
	struct revnat_value rval = { .vip = key.vip, .port = key.port };
	bpf_map_update_elem(&skiff_revnat, &rkey, &rval, BPF_ANY);

	struct stats_key skey = { .id = id, .ip = be->ip, .port = be->port };
	__u64 *hits = bpf_map_lookup_elem(&skiff_stats, &skey);
	if (hits) {
		*hits += 1; // per CPU: no other writer
	} else {
		// Other CPUs' slots of a new entry start at zero.
		__u64 one = 1;
		bpf_map_update_elem(&skiff_stats, &skey, &one, BPF_NOEXIST);
	}

	ctx->user_ip4 = be->ip;
	ctx->user_port = be->port;
	return 1;
}

// untranslate shows the service's address instead of the backend's the socket talks to.
static __always_inline void untranslate(struct bpf_sock_addr *ctx)
{
	struct revnat_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.ip = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct revnat_value *rval = bpf_map_lookup_elem(&skiff_revnat, &rkey);
	if (!rval)
		return;
	ctx->user_ip4 = rval->vip;
	ctx->user_port = rval->port;
}

SEC("cgroup/connect4")
int skiff_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	return translate(ctx);
}

SEC("cgroup/sendmsg4")
int skiff_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	return translate(ctx);
}

SEC("cgroup/recvmsg4")
int skiff_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol == IPPROTO_UDP)
		untranslate(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int skiff_getpeername4(struct bpf_sock_addr *ctx)
{
	untranslate(ctx);
	return 1;
}

char __license[] SEC("license") = "Dual MIT/GPL";
