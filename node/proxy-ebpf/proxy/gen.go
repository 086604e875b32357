package proxy

// The BPF objects are generated and committed, so building needs no clang; regenerate with
// `make generate-bpf` (needs clang, llvm-strip and libbpf-dev).
//go:generate go tool bpf2go -tags linux -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type service_key -type service_value -type backend_key -type backend_value -type revnat_key -type revnat_value -type stats_key -type config_value lb lb.c
