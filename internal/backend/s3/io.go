package s3

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-backup/cairn/internal/backend"
)

// s3Error wraps an error from the S3 client with the backend sentinel it
// stands for (if any) and whether retrying is pointless.
type s3Error struct {
	err  error
	kind error // backend.ErrNotExist, backend.ErrNoSpace or nil
	perm bool
}

func (e *s3Error) Error() string { return e.err.Error() }

func (e *s3Error) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.err, e.kind}
}

// Permanent reports whether retrying cannot help (missing objects or
// buckets, refused credentials or permissions, invalid ranges).
func (e *s3Error) Permanent() bool { return e.perm }

// classify maps an S3 client error to the backend's sentinel errors. A
// missing bucket is a permanent error but not ErrNotExist, so that no
// caller can mistake it for an empty listing.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *s3Error
	if errors.As(err, &se) {
		return err
	}
	resp := minio.ToErrorResponse(err)
	e := &s3Error{err: err}
	switch {
	case resp.Code == "NoSuchKey", resp.StatusCode == http.StatusNotFound && (resp.Code == "" || resp.Code == "NotFound"):
		e.kind, e.perm = backend.ErrNotExist, true
	case resp.Code == "NoSuchBucket":
		e.err = fmt.Errorf("%w (the bucket does not exist)", err)
		e.perm = true
	case resp.StatusCode == http.StatusInsufficientStorage, resp.Code == "XMinioStorageFull", resp.Code == "QuotaExceeded":
		e.kind, e.perm = backend.ErrNoSpace, true
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusRequestedRangeNotSatisfiable,
		resp.Code == "AccessDenied", resp.Code == "InvalidAccessKeyId", resp.Code == "SignatureDoesNotMatch",
		resp.Code == "InvalidBucketName", resp.Code == "InvalidArgument":
		e.perm = true
	}
	return e
}

// isNotFound reports whether err says the object does not exist.
func isNotFound(err error) bool {
	return errors.Is(classify(err), backend.ErrNotExist)
}
