package up

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc/grpclog"
)

// grpcLogger is gRPC's logger on slog: gRPC (the apiserver's server and clients, and etcd's
// client) otherwise writes its errors to stderr as plain text. gRPC's info lines are chatty,
// so they are debug.
type grpcLogger struct{ log *slog.Logger }

var _ grpclog.LoggerV2 = grpcLogger{}

func (l grpcLogger) Info(args ...any)   { l.out(slog.LevelDebug, fmt.Sprint(args...)) }
func (l grpcLogger) Infoln(args ...any) { l.out(slog.LevelDebug, fmt.Sprint(args...)) }
func (l grpcLogger) Infof(format string, args ...any) {
	l.out(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Warning(args ...any)   { l.out(slog.LevelWarn, fmt.Sprint(args...)) }
func (l grpcLogger) Warningln(args ...any) { l.out(slog.LevelWarn, fmt.Sprint(args...)) }
func (l grpcLogger) Warningf(format string, args ...any) {
	l.out(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Error(args ...any)   { l.out(slog.LevelError, fmt.Sprint(args...)) }
func (l grpcLogger) Errorln(args ...any) { l.out(slog.LevelError, fmt.Sprint(args...)) }
func (l grpcLogger) Errorf(format string, args ...any) {
	l.out(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal logs and exits, as gRPC expects of a fatal log.
func (l grpcLogger) Fatal(args ...any)   { l.fatal(fmt.Sprint(args...)) }
func (l grpcLogger) Fatalln(args ...any) { l.fatal(fmt.Sprint(args...)) }
func (l grpcLogger) Fatalf(format string, args ...any) {
	l.fatal(fmt.Sprintf(format, args...))
}

// V reports whether verbose level v is on: gRPC's verbose logging is off.
func (l grpcLogger) V(v int) bool { return v <= 0 }

func (l grpcLogger) out(level slog.Level, msg string) {
	if ctx := context.Background(); l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, msg)
	}
}

func (l grpcLogger) fatal(msg string) {
	l.log.Error(msg)
	os.Exit(1)
}
