// Package limits holds the size limits that several parts of Skiff must agree on. They are one
// chain: a request body the apiserver reads, the object it stores in etcd, and the bus message
// that carries the change. Each limit is derived from MaxObjectBytes so that whatever the API
// accepts, etcd stores and the bus carries. docs/api.md documents them for users.
package limits

// MaxObjectBytes is the largest object the API stores: the size of its stored (protobuf)
// encoding. Larger objects are refused with 413 RequestEntityTooLarge. Kubernetes' practical
// limit is etcd's 1.5 MiB request limit; Skiff's is lower and explicit.
const MaxObjectBytes = 1 << 20

// MaxRequestBodyBytes is the largest request body the apiserver reads (REST and gRPC). JSON
// is larger than the stored protobuf, so it is a multiple of MaxObjectBytes; Kubernetes uses
// 3 MiB too. A body above it is refused with 413 without being read to its end.
const MaxRequestBodyBytes = 3 * MaxObjectBytes

// EtcdMaxRequestBytes is the etcd request limit the apiserver needs: one object plus its key
// and the transaction around it. Skiff's embedded etcd is started with it; an external etcd
// must allow at least this much (etcd's default, 1.5 MiB, does).
const EtcdMaxRequestBytes = MaxObjectBytes + MaxObjectBytes/2

// BusMaxPayloadBytes is the NATS max_payload the event bus needs: a message carries the new
// object and, when its labels or selectable fields changed, the previous one, plus headers.
// Skiff's embedded NATS is started with it; an external NATS must allow at least this much
// (NATS' default is 1 MiB). The publisher never stops on a message the bus refuses anyway:
// it publishes a marker without the object, and readers fetch the object from the API.
const BusMaxPayloadBytes = 2*MaxObjectBytes + 256<<10
