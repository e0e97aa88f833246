package cli

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/s3"
)

func init() { backendFactories["s3"] = openS3 }

// openS3 opens "s3:..." locations. Credentials come from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or the
// shared credentials file (AWS_PROFILE); the region from
// AWS_DEFAULT_REGION (or AWS_REGION). Options, as environment variables:
// CAIRN_S3_REGION, CAIRN_S3_STORAGE_CLASS, CAIRN_S3_BUCKET_LOOKUP
// (auto, dns, path) and CAIRN_S3_LIST_OBJECTS_V1=true.
func openS3(ctx context.Context, g *globalOptions, loc string, create bool) (backend.Backend, error) {
	cfg, err := s3.ParseConfig("s3:" + loc)
	if err != nil {
		return nil, err
	}
	cfg.Region = env("CAIRN_S3_REGION", "AWS_DEFAULT_REGION", "AWS_REGION")
	cfg.StorageClass = env("CAIRN_S3_STORAGE_CLASS")
	if v := env("CAIRN_S3_BUCKET_LOOKUP"); v != "" {
		cfg.BucketLookup = v
	}
	switch v := env("CAIRN_S3_LIST_OBJECTS_V1"); v {
	case "", "false", "0":
	case "true", "1":
		cfg.ListObjectsV1 = true
	default:
		return nil, fmt.Errorf("CAIRN_S3_LIST_OBJECTS_V1=%q: want true or false", v)
	}
	if g.Connections > 0 {
		cfg.Connections = uint(g.Connections)
	}
	if create {
		return s3.Create(ctx, cfg)
	}
	return s3.Open(ctx, cfg)
}
