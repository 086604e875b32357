package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/client"
)

func newImageCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the images of the nodes"}
	cmd.AddCommand(newImageLoadCommand(o))
	return cmd
}

func newImageLoadCommand(o *globalOptions) *cobra.Command {
	var nodes []string
	cmd := &cobra.Command{
		Use:   "load FILE.tar [--node NODE]...",
		Short: "Load an image tarball into the nodes' container runtime",
		Long: "Load an image tarball (docker save, or an OCI layout naming its image) into the container runtime " +
			"of every node (or of the --node ones), for clusters that reach no registry. The file is streamed " +
			"through the apiserver to each node's kubelet, which imports it into its containerd.",
		Example: "  make images && skiff image load bin/images/demo.tar",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client.New(o.server)
			if err != nil {
				return err
			}
			defer c.Close()
			api, err := client.KubeletAPI(c)
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				k, _ := c.Scheme().ForName("nodes")
				list, err := client.ListAll(cmd.Context(), c, k, "", client.ListOptions{})
				if err != nil {
					return err
				}
				for _, n := range list.Items {
					node := n.(*corev1.Node)
					if node.GetStatus().GetDaemonEndpoints().GetKubeletEndpoint().GetPort() == 0 {
						continue // hollow nodes serve no kubelet API
					}
					nodes = append(nodes, node.GetMetadata().GetName())
				}
				if len(nodes) == 0 {
					return errors.New("no node to load on: the cluster has no node with a kubelet API (is a node running?)")
				}
			}
			rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
			for _, node := range nodes {
				names, err := loadImage(cmd, api, args[0], node)
				if err != nil {
					rep.report(fmt.Errorf("node %s: %w", node, err))
					continue
				}
				fmt.Fprintf(o.streams.Out, "Loaded %s on node %s\n", strings.Join(names, ", "), node)
			}
			return rep.result()
		},
	}
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "a node to load on (repeatable; default: every node)")
	return cmd
}

func loadImage(cmd *cobra.Command, api corev1.KubeletAPIClient, path, node string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := api.LoadImage(cmd.Context())
	if err != nil {
		return nil, apierrors.FromError(err)
	}
	buf := make([]byte, 1<<20)
	first := true
	for {
		n, rerr := f.Read(buf)
		if n > 0 || first {
			msg := &corev1.LoadImageRequest{Data: append([]byte(nil), buf[:n]...)}
			if first {
				msg.NodeName, first = node, false
			}
			if err := stream.Send(msg); err != nil {
				break // the server ended the stream: CloseAndRecv says why
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, apierrors.FromError(err)
	}
	return resp.GetImages(), nil
}
