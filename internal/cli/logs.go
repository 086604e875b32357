package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/codec"
)

// podName accepts POD or pod/POD (pods/POD, po/POD), as kubectl does.
func podName(cmd *cobra.Command, arg string) (string, error) {
	if kind, name, ok := strings.Cut(arg, "/"); ok {
		switch kind {
		case "pod", "pods", "po":
			return name, nil
		}
		return "", usageErrorf(cmd, "%s: only pods have logs and exec", arg)
	}
	return arg, nil
}

func newLogsCommand(o *globalOptions) *cobra.Command {
	var (
		container        string
		follow, previous bool
		tail, limitBytes int64
	)
	cmd := &cobra.Command{
		Use:   "logs POD [-c CONTAINER] [-f] [--tail N] [--previous]",
		Short: "Print the logs of a container in a pod",
		Long: "Print the logs of a container in a pod. The apiserver forwards the request to the kubelet " +
			"of the pod's node, which reads the container's log file.",
		Example: "  skiff logs web-0\n  skiff logs web-0 -c sidecar --tail 20\n  skiff logs -f web-0\n  skiff logs web-0 --previous",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := podName(cmd, args[0])
			if err != nil {
				return err
			}
			req := &corev1.PodLogsRequest{Namespace: o.namespace, Name: name, Container: container, Follow: follow, Previous: previous}
			if tail >= 0 {
				req.TailLines = &tail
			}
			if limitBytes > 0 {
				req.LimitBytes = &limitBytes
			}
			if strings.HasPrefix(o.server, "http://") || strings.HasPrefix(o.server, "https://") {
				return restLogs(cmd, o, req)
			}
			c, err := client.New(o.server)
			if err != nil {
				return err
			}
			defer c.Close()
			api, err := client.KubeletAPI(c)
			if err != nil {
				return err
			}
			stream, err := api.Logs(cmd.Context(), req)
			if err != nil {
				return apierrors.FromError(err)
			}
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) || cmd.Context().Err() != nil {
					return nil
				}
				if err != nil {
					return apierrors.FromError(err)
				}
				if _, err := o.streams.Out.Write(chunk.GetData()); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "the container (needed when the pod has several)")
	f.BoolVarP(&follow, "follow", "f", false, "keep streaming the log as it grows")
	f.BoolVarP(&previous, "previous", "p", false, "the log of the previous, terminated instance of the container")
	f.Int64Var(&tail, "tail", -1, "the last N lines only (-1: all)")
	f.Int64Var(&limitBytes, "limit-bytes", 0, "at most this many bytes (0: no limit)")
	return cmd
}

// restLogs reads pods/NAME/log over REST, as kubectl does.
func restLogs(cmd *cobra.Command, o *globalOptions, req *corev1.PodLogsRequest) error {
	q := url.Values{}
	if req.Container != "" {
		q.Set("container", req.Container)
	}
	if req.Follow {
		q.Set("follow", "true")
	}
	if req.Previous {
		q.Set("previous", "true")
	}
	if req.TailLines != nil {
		q.Set("tailLines", strconv.FormatInt(*req.TailLines, 10))
	}
	if req.LimitBytes != nil {
		q.Set("limitBytes", strconv.FormatInt(*req.LimitBytes, 10))
	}
	u := fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s/log?%s", strings.TrimSuffix(o.server, "/"),
		url.PathEscape(req.Namespace), url.PathEscape(req.Name), q.Encode())
	hreq, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		st := &metav1.Status{}
		if err := codec.Unmarshal(body, st); err != nil || st.GetKind() != "Status" {
			st = &metav1.Status{Status: "Failure", Code: int32(resp.StatusCode), Message: resp.Status + ": " + strings.TrimSpace(string(body))}
		}
		return &apierrors.StatusError{Status: st}
	}
	_, err = io.Copy(o.streams.Out, resp.Body)
	if cmd.Context().Err() != nil {
		return nil
	}
	return err
}
