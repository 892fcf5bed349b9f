package redisstore

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// LogTo sends go-redis's own messages (failed dials, Sentinel's master
// changes, pool warnings), which it otherwise prints to standard error in
// a format of its own, to log as warnings. go-redis keeps one logger for
// the whole process, so main calls this once while wiring.
//
// Its messages name addresses, not passwords; credentials in any URL they
// quote are taken out all the same.
func LogTo(log *zap.Logger) {
	redis.SetLogger(clientLogger{log: log})
}

type clientLogger struct{ log *zap.Logger }

func (l clientLogger) Printf(_ context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.log.Warn("redis client", zap.String("detail", urlCredentials.ReplaceAllString(msg, "//$1:xxxxx@")))
}

// urlCredentials is the user:password@ part of a URL.
var urlCredentials = regexp.MustCompile(`//([^/@\s:]*):[^/@\s]*@`)
