package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/codec"
)

// registration is one kind's grpc-gateway registration over a client connection.
type registration func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error

// register adapts a generated RegisterXHandlerClient and its client constructor.
func register[C any](handler func(context.Context, *runtime.ServeMux, C) error, newClient func(grpc.ClientConnInterface) C) registration {
	return func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return handler(ctx, mux, newClient(cc))
	}
}

// restHandlers are the grpc-gateway registrations of every kind's service.
func restHandlers() []registration {
	return []registration{
		register(corev1.RegisterNamespaceAPIHandlerClient, corev1.NewNamespaceAPIClient),
		register(corev1.RegisterNodeAPIHandlerClient, corev1.NewNodeAPIClient),
		register(corev1.RegisterPodAPIHandlerClient, corev1.NewPodAPIClient),
		register(corev1.RegisterServiceAPIHandlerClient, corev1.NewServiceAPIClient),
		register(corev1.RegisterEndpointsAPIHandlerClient, corev1.NewEndpointsAPIClient),
		register(corev1.RegisterEventAPIHandlerClient, corev1.NewEventAPIClient),
		register(appsv1.RegisterReplicaSetAPIHandlerClient, appsv1.NewReplicaSetAPIClient),
		register(appsv1.RegisterDeploymentAPIHandlerClient, appsv1.NewDeploymentAPIClient),
		register(coordinationv1.RegisterLeaseAPIHandlerClient, coordinationv1.NewLeaseAPIClient),
	}
}

// newGateway serves the REST API on Kubernetes' paths by calling the gRPC handlers through
// conn, with Kubernetes-shaped JSON both ways and Status bodies for every error.
func newGateway(ctx context.Context, conn grpc.ClientConnInterface, rewrite runtime.ForwardResponseRewriter) (*runtime.ServeMux, error) {
	mux := runtime.NewServeMux(
		runtime.WithForwardResponseRewriter(rewrite),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &codec.GatewayMarshaler{}),
		runtime.WithErrorHandler(writeStatusError),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithForwardResponseOption(setHTTPCode),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
	)
	for _, reg := range restHandlers() {
		if err := reg(ctx, mux, conn); err != nil {
			return nil, fmt.Errorf("register REST handler: %w", err)
		}
	}
	return mux, nil
}

// writeStatus writes a Kubernetes Status as the response.
func writeStatus(w http.ResponseWriter, se *apierrors.StatusError) {
	body, err := codec.Marshal(se.Status)
	if err != nil {
		body = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"unencodable error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(se.Status.GetCode()))
	_, _ = w.Write(append(body, '\n'))
}

func writeStatusError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	writeStatus(w, apierrors.FromError(err))
}

func routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	se := notFound()
	if code == http.StatusMethodNotAllowed {
		se.Status.Code, se.Status.Reason, se.Status.Message = http.StatusMethodNotAllowed, apierrors.ReasonMethodNotAllowed,
			fmt.Sprintf("the server does not allow this method (%s) on the requested resource", r.Method)
	}
	writeStatus(w, se)
}

// setHTTPCode applies the code a handler asked for (201 on create).
func setHTTPCode(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	if vals := md.HeaderMD.Get(httpCodeHeader); len(vals) > 0 {
		if code, err := strconv.Atoi(vals[0]); err == nil {
			w.WriteHeader(code)
		}
	}
	return nil
}
