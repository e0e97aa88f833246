package rest

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzDecodeListing feeds arbitrary bodies to both listing decoders.
func FuzzDecodeListing(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `["a","b"]`, `[{"name":"a","size":1}]`, `[] []`, `[{"name":1}]`, ` [ ] `, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		accepted := func(err error) {
			trimmed := bytes.TrimSpace(data)
			if err == nil && (!json.Valid(data) || len(trimmed) == 0 || trimmed[0] != '[') {
				t.Fatalf("accepted %q as one JSON array", data)
			}
		}
		var entries []listEntry
		accepted(decodeJSONArray(data, &entries))
		var names []string
		accepted(decodeJSONArray(data, &names))
	})
}

// FuzzParseConfig checks that accepted URLs are usable and that errors
// never echo a password.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"rest:http://host/", "rest:https://u:p@host:8000/a/b", "http://h", "rest:ftp://x/", "rest:http://u:secret@h:bad/", "rest:http://[::1]:80/r/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := parseConfig(s, func(string) string { return "" })
		if err != nil {
			if u, perr := url.Parse(strings.TrimPrefix(s, "rest:")); perr == nil && u.User != nil {
				bare := *u
				bare.User = nil // the password may also occur elsewhere in the URL ("//:aaaa@0aaaa")
				if p, ok := u.User.Password(); ok && len(p) > 3 && strings.Contains(err.Error(), p) && !strings.Contains(bare.String(), p) {
					t.Fatalf("error for %q shows the password: %v", s, err)
				}
			}
			return
		}
		if cfg.URL == nil || !strings.HasSuffix(cfg.URL.Path, "/") || (cfg.URL.Scheme != "http" && cfg.URL.Scheme != "https") || cfg.URL.Host == "" {
			t.Fatalf("parseConfig(%q) = %v", s, cfg.URL)
		}
		if _, err := Open(t.Context(), cfg); err != nil {
			t.Fatalf("Open(%q): %v", s, err)
		}
	})
}
