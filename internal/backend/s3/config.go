package s3

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// DefaultConnections is the default number of parallel requests.
const DefaultConnections = 5

// DefaultPartSize is the default multipart part size: objects up to this
// size are stored with one PUT, larger ones with a multipart upload.
const DefaultPartSize = 16 << 20

// minPartSize is S3's smallest allowed part size.
const minPartSize = 5 << 20

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = 5 * time.Minute

// Bucket lookup styles (Config.BucketLookup).
const (
	LookupAuto = "auto" // virtual-host style where the endpoint supports it (AWS), else path style
	LookupDNS  = "dns"  // virtual-host style: https://bucket.host/key
	LookupPath = "path" // path style: https://host/bucket/key
)

// Config configures an S3 backend.
type Config struct {
	Endpoint string // host[:port], no scheme
	UseHTTP  bool   // plain HTTP instead of HTTPS
	Bucket   string
	Prefix   string // object key prefix without leading or trailing "/"; may be empty

	// Region of the bucket; empty lets the client ask the server (AWS) or
	// use us-east-1.
	Region string
	// BucketLookup is LookupAuto (default), LookupDNS or LookupPath.
	BucketLookup string
	// StorageClass for new objects (e.g. STANDARD_IA); empty: the
	// bucket's default.
	StorageClass string

	// Explicit credentials. When KeyID is empty the credentials come from
	// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then
	// from the shared credentials file (~/.aws/credentials or
	// $AWS_SHARED_CREDENTIALS_FILE) for Profile (default $AWS_PROFILE, else
	// "default"); with none of them requests are anonymous.
	KeyID        string
	Secret       string
	SessionToken string
	Profile      string

	// Connections is the number of parallel requests (default
	// DefaultConnections).
	Connections uint
	// PartSize of multipart uploads (default DefaultPartSize, at least
	// 5 MiB).
	PartSize uint64
	// ListObjectsV1 uses the old ListObjects API for servers without
	// ListObjectsV2.
	ListObjectsV1 bool
	// StallTimeout aborts a request when no data moved on its connection
	// for this long (default DefaultStallTimeout; negative disables).
	StallTimeout time.Duration
}

// ParseConfig parses an S3 location, as restic writes them:
//
//	s3:https://host[:port]/bucket[/prefix]
//	s3:http://host[:port]/bucket[/prefix]
//	s3:host[:port]/bucket[/prefix]          (HTTPS, e.g. s3:s3.amazonaws.com/bucket/prefix)
//
// The "s3:" prefix is optional. Credentials never go into the location.
func ParseConfig(s string) (Config, error) {
	raw := strings.TrimPrefix(s, "s3:")
	cfg := Config{Connections: DefaultConnections, PartSize: DefaultPartSize, BucketLookup: LookupAuto}
	var host, p string
	switch {
	case strings.HasPrefix(raw, "http://"), strings.HasPrefix(raw, "https://"):
		u, err := url.Parse(raw)
		if err != nil {
			return Config{}, fmt.Errorf("parse s3 location: %w", redactURLError(err))
		}
		if u.User != nil {
			return Config{}, errors.New("parse s3 location: credentials do not belong in the location; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return Config{}, fmt.Errorf("parse s3 location %q: query strings and fragments are not allowed", raw)
		}
		cfg.UseHTTP = u.Scheme == "http"
		host, p = u.Host, u.Path
	case strings.HasPrefix(raw, "s3://"), strings.Contains(raw, "://"):
		return Config{}, fmt.Errorf("parse s3 location %q: use s3:https://host/bucket/prefix or s3:host/bucket/prefix", s)
	default:
		host, p, _ = strings.Cut(raw, "/")
		if strings.Contains(host, "@") {
			return Config{}, errors.New("parse s3 location: credentials do not belong in the location; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	}
	if host == "" {
		return Config{}, fmt.Errorf("parse s3 location %q: no host", s)
	}
	p = strings.Trim(p, "/")
	bucket, prefix, _ := strings.Cut(p, "/")
	if bucket == "" {
		return Config{}, fmt.Errorf("parse s3 location %q: no bucket", s)
	}
	if prefix != "" {
		prefix = strings.Trim(path.Clean(prefix), "/")
		for _, part := range strings.Split(prefix, "/") {
			if part == ".." || part == "." {
				return Config{}, fmt.Errorf("parse s3 location %q: prefix must not contain %q", s, part)
			}
		}
	}
	cfg.Endpoint, cfg.Bucket, cfg.Prefix = host, bucket, prefix
	return cfg, nil
}

// redactURLError drops the URL (which may hold a password) from a
// *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// location names the repository for messages.
func (c Config) location() string {
	scheme := "https"
	if c.UseHTTP {
		scheme = "http"
	}
	loc := "s3:" + scheme + "://" + c.Endpoint + "/" + c.Bucket
	if c.Prefix != "" {
		loc += "/" + c.Prefix
	}
	return loc
}
