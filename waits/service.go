package waits

import (
	"path"
	"strings"
)

// Ports names services by their well-known ports. A Reader uses its own
// copy, which the caller may extend (a MySQL on 3307).
var Ports = map[uint16]Service{
	3306:  ServiceMySQL,
	5432:  ServicePostgreSQL,
	6379:  ServiceRedis,
	11211: ServiceMemcached,
	53:    ServiceDNS,
	80:    ServiceHTTP,
	443:   ServiceHTTPS,
}

// serviceOfPath names the service behind a unix socket by the socket
// file's name as the servers' packages install it; any other name is
// ServiceOther.
func serviceOfPath(p string) Service {
	base := path.Base(p)
	switch {
	case base == "mysqld.sock" || base == "mysql.sock" || base == "mariadb.sock":
		return ServiceMySQL
	case strings.HasPrefix(base, ".s.PGSQL."):
		return ServicePostgreSQL
	case base == "redis.sock" || base == "redis-server.sock":
		return ServiceRedis
	case base == "memcached.sock":
		return ServiceMemcached
	}
	return ServiceOther
}
