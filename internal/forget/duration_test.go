package forget

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseDuration(t *testing.T) {
	// Accepted and rejected inputs as observed with restic 0.14.
	type testCase struct {
		in      string
		want    Duration
		str     string
		wantErr string
	}
	tests := []testCase{
		{in: "1y2m3d4h", want: Duration{1, 2, 3, 4}, str: "1y2m3d4h"},
		{in: "4h3d", want: Duration{Days: 3, Hours: 4}, str: "3d4h"},
		{in: "1h2y", want: Duration{Years: 2, Hours: 1}, str: "2y1h"},
		{in: "1d1y", want: Duration{Years: 1, Days: 1}, str: "1y1d"},
		{in: "1d2d", want: Duration{Days: 2}, str: "2d"},
		{in: "2d1d", want: Duration{Days: 1}, str: "1d"},
		{in: "01d", want: Duration{Days: 1}, str: "1d"},
		{in: "1y0m", want: Duration{Years: 1}, str: "1y"},
		{in: "0d", want: Duration{}, str: ""},
		{in: "0y0m0d0h", want: Duration{}, str: ""},
		{in: "-0d", want: Duration{}, str: ""},
		{in: "", want: Duration{}, str: ""},
		{in: "  1d", want: Duration{Days: 1}, str: "1d"},
		{in: "1d ", want: Duration{Days: 1}, str: "1d"},
		{in: "1d\t", want: Duration{Days: 1}, str: "1d"},
		{in: "-1d", want: Duration{Days: -1}, str: "-1d"},
		{in: "1y-2m", want: Duration{Years: 1, Months: -2}, str: "1y-2m"},
		{in: "7d", want: Duration{Days: 7}, str: "7d"},
		{in: "1w", wantErr: "invalid unit 'w' found after number 1"},
		{in: "1D", wantErr: "invalid unit 'D' found after number 1"},
		{in: "1", wantErr: "no unit found after number 1"},
		{in: "d", wantErr: "no number found"},
		{in: "x1d", wantErr: "no number found"},
		{in: "1 d", wantErr: "invalid unit ' ' found after number 1"},
		{in: "1-d", wantErr: "invalid unit '-' found after number 1"},
		{in: "1-2d", wantErr: "invalid unit '-' found after number 1"},
		{in: "-", wantErr: "no number found"},
		{in: "--1d", wantErr: "no number found"},
		{in: "+1d", wantErr: "no number found"},
		{in: "1d+", wantErr: "no number found"},
		{in: "1y-", wantErr: "no number found"},
		{in: "\u0663d", wantErr: "no number found"}, // restic 0.14 panics here
		{in: "1é", wantErr: "invalid unit 'é' found after number 1"},
		{in: "99999999999999999999d", wantErr: "out of range"},
	}
	// A day count beyond 32 bits fits an int only on 64-bit systems
	// (restic's strconv.Atoi is just as limited).
	if big := int64(99999999999); strconv.IntSize == 64 {
		tests = append(tests, testCase{in: "99999999999d", want: Duration{Days: int(big)}, str: "99999999999d"})
	} else {
		tests = append(tests, testCase{in: "99999999999d", wantErr: "out of range"})
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDuration(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseDuration(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.str {
			t.Errorf("ParseDuration(%q).String() = %q, want %q", tc.in, s, tc.str)
		}
		if got.Zero() != (tc.want == Duration{}) {
			t.Errorf("ParseDuration(%q).Zero() = %v", tc.in, got.Zero())
		}
	}
}

func TestDurationFlagValue(t *testing.T) {
	var d Duration
	if err := d.Set("2y3h"); err != nil {
		t.Fatal(err)
	}
	if d != (Duration{Years: 2, Hours: 3}) || d.String() != "2y3h" || d.Type() != "duration" {
		t.Fatalf("Set: got %+v %q %q", d, d.String(), d.Type())
	}
	if err := d.Set("3w"); err == nil {
		t.Fatal("Set(3w) succeeded")
	}
	if d != (Duration{Years: 2, Hours: 3}) {
		t.Fatalf("failed Set changed the value to %+v", d)
	}
	if !(Duration{Days: -1}).Negative() || (Duration{Days: 1}).Negative() {
		t.Fatal("Negative wrong")
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1y2m3d4h", "", "1w", "-1d", " 7d ", "1d1d", "99999999999999999999d", "1y-", "\u0663d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		// String must round-trip.
		back, err := ParseDuration(d.String())
		if err != nil {
			t.Fatalf("ParseDuration(%q) = %+v, but its String %q does not parse: %v", s, d, d.String(), err)
		}
		if back != d {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v", s, d, d.String(), back)
		}
	})
}
