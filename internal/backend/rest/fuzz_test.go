package rest

import (
	"strings"
	"testing"
)

// FuzzParseContentRange checks the invariants of an accepted header.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-5/*", "bytes */10", "bytes 9-0/10", "bytes 0-9/9", "bytes -1-3/5", "bytes 1-2/3/4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start < 0 || end < start || (total != -1 && total <= end) {
			t.Fatalf("parseContentRange(%q) = %d %d %d", s, start, end, total)
		}
	})
}

// FuzzDecodeListing feeds arbitrary bodies to both listing decoders.
func FuzzDecodeListing(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `["a","b"]`, `[{"name":"a","size":1}]`, `[] []`, `[{"name":1}]`, ` [ ] `, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []listEntry
		if err := decodeJSONArray(data, &entries); err == nil && entries == nil && !strings.Contains(string(data), "[") {
			t.Fatalf("accepted %q as an array", data)
		}
		var names []string
		_ = decodeJSONArray(data, &names)
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
			if cfgURL, perr := parseConfig("rest:http://h/", func(string) string { return "" }); perr != nil || cfgURL.URL == nil {
				t.Fatal("baseline broken")
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
