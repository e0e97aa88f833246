package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseAndInject(t *testing.T) {
	if err := Set("a=error,b=sleep(10ms),c=error@2"); err != nil {
		t.Fatal(err)
	}
	defer Set("")
	var e *ErrInjected
	if err := Inject("a"); !errors.As(err, &e) || e.Name != "a" {
		t.Fatalf("a: %v", err)
	}
	start := time.Now()
	if err := Inject("b"); err != nil || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("b: %v", err)
	}
	if Inject("c") != nil || Inject("c") == nil || Inject("c") != nil {
		t.Fatal("c should fire only on the 2nd hit")
	}
	if Inject("unknown") != nil {
		t.Fatal("unknown point fired")
	}
	for _, bad := range []string{"x", "x=boom", "x=sleep(zz)", "x=kill@0"} {
		if Set(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestKill(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Inject("die")
		os.Exit(0) // not reached when the kill works
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKill$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "CAIRN_FAILPOINTS=die=kill")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("child was not killed: %v", err)
	}
}
