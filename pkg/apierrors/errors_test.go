package apierrors

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSizeAndMediaTypeErrors(t *testing.T) {
	tests := []struct {
		err    *StatusError
		code   int32
		reason string
		grpc   codes.Code
		msg    string
	}{
		{NewRequestEntityTooLarge("limit is 3145728"), http.StatusRequestEntityTooLarge, ReasonRequestEntityTooLarge,
			codes.ResourceExhausted, "Request entity too large: limit is 3145728"},
		{NewUnsupportedMediaType("text/plain", "application/json"), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType,
			codes.InvalidArgument, `the body of the request was in an unknown format ("text/plain") - accepted media types include: application/json`},
	}
	for _, tt := range tests {
		st := tt.err.Status
		if st.GetCode() != tt.code || st.GetReason() != tt.reason || st.GetMessage() != tt.msg {
			t.Errorf("%v: got %d %s %q", tt.err, st.GetCode(), st.GetReason(), st.GetMessage())
		}
		gs := tt.err.GRPCStatus()
		if gs.Code() != tt.grpc {
			t.Errorf("%s: gRPC code %v, want %v", tt.reason, gs.Code(), tt.grpc)
		}
		// Over gRPC the Status travels as a detail and comes back whole.
		if back := FromError(gs.Err()); back.Status.GetCode() != tt.code || back.Status.GetReason() != tt.reason {
			t.Errorf("%s: FromError(gRPC) = %v", tt.reason, back.Status)
		}
	}
}

// TestMessageTooLargeFromGRPC: grpc-go refuses an oversized message itself, without a Status
// detail; clients still read a 413, while other ResourceExhausted errors stay 429.
func TestMessageTooLargeFromGRPC(t *testing.T) {
	for _, msg := range []string{
		"grpc: received message larger than max (4194404 vs. 3145728)",
		"grpc: received message after decompression larger than max 3145728",
	} {
		se := FromError(status.Error(codes.ResourceExhausted, msg))
		if se.Status.GetCode() != http.StatusRequestEntityTooLarge || se.Status.GetReason() != ReasonRequestEntityTooLarge {
			t.Errorf("%q: %v; want 413 RequestEntityTooLarge", msg, se.Status)
		}
	}
	if se := FromError(status.Error(codes.ResourceExhausted, "rate limited")); se.Status.GetCode() != http.StatusTooManyRequests {
		t.Errorf("other ResourceExhausted: %v; want 429", se.Status)
	}
}
