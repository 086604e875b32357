package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// A client given several apiservers works while any of them answers: here the first address
// has nothing listening.
func TestGRPCClientFailsOverBetweenAPIServers(t *testing.T) {
	env := testenv.Start(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	c, err := client.New(dead + "," + env.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, _ := scheme.Default().ForName("namespaces")
	if _, err := c.Get(ctx, ns, "", "default"); err != nil {
		t.Fatalf("get through the second apiserver: %v", err)
	}
}
