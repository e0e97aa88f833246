package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

func init() { extraCommands = append(extraCommands, newKeyCommand) }

// keyAddOptions are the flags of key add and key passwd.
type keyAddOptions struct {
	newPasswordFile string
	user            string
	host            string
}

func addKeyAddFlags(cmd *cobra.Command, o *keyAddOptions) {
	f := cmd.Flags()
	f.StringVar(&o.newPasswordFile, "new-password-file", "", "read the new password from `file`")
	f.StringVar(&o.user, "user", "", "the user `name` recorded in the new key (default: current user)")
	f.StringVar(&o.host, "host", "", "the host `name` recorded in the new key (default: this host)")
}

func newKeyCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage keys (passwords)",
		Long: `Manage the keys (passwords) of the repository. Every key file wraps the same
master key, so any of the passwords opens the repository.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var addOpts, passwdOpts keyAddOptions
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys",
		Long: `List the key files: ID, user, host and creation time. The key used to open
the repository is marked with *.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runKeyList(cmd.Context(), g) },
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a new key (password)",
		Long: `Add a key file for a new password. The new password is read from
--new-password-file, or asked for twice on the terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runKeyAdd(cmd.Context(), g, addOpts) },
	}
	addKeyAddFlags(add, &addOpts)
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a key (password)",
		Long:  `Remove the key file ID (a unique prefix is enough). The key in use cannot be removed.`,
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runKeyRemove(cmd.Context(), g, args[0]) },
	}
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the password: add a new key, then remove the current one",
		Long: `Change the password of the key in use: a key file for the new password is
written and verified, then the current key file is removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runKeyPasswd(cmd.Context(), g, passwdOpts) },
	}
	addKeyAddFlags(passwd, &passwdOpts)
	cmd.AddCommand(list, add, remove, passwd)
	return cmd
}

// keyListJSON is one element of key list --json (restic's shape).
type keyListJSON struct {
	Current  bool   `json:"current"`
	ID       string `json:"id"`
	UserName string `json:"userName"`
	HostName string `json:"hostName"`
	Created  string `json:"created"`
}

const keyTimeFormat = "2006-01-02 15:04:05"

func runKeyList(ctx context.Context, g *globalOptions) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "key list", true)
	if err != nil {
		return err
	}
	defer unlock()
	ids, err := r.ListIDs(ctx, core.KeyFile)
	if err != nil {
		return err
	}
	sort.Sort(ids)
	current := r.KeyFile().ID()
	keys := make([]keyListJSON, 0, len(ids))
	for _, id := range ids {
		kf, err := repo.LoadKeyFile(ctx, r.Backend(), id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			g.warnf("warning: %v\n", err)
			continue
		}
		keys = append(keys, keyListJSON{
			Current:  id == current,
			ID:       id.String(),
			UserName: kf.Username,
			HostName: kf.Hostname,
			Created:  kf.Created.Local().Format(keyTimeFormat),
		})
	}
	if g.JSON {
		return g.printJSON(keys)
	}
	userW, hostW := len("User"), len("Host")
	for _, k := range keys {
		userW = max(userW, len(k.UserName))
		hostW = max(hostW, len(k.HostName))
	}
	line := strings.Repeat("-", 9+2+userW+2+hostW+2+len(keyTimeFormat))
	fmt.Fprintf(g.stdout, "%-9s  %-*s  %-*s  %s\n%s\n", " ID", userW, "User", hostW, "Host", "Created", line)
	for _, k := range keys {
		mark := " "
		if k.Current {
			mark = "*"
		}
		fmt.Fprintf(g.stdout, "%s%s  %-*s  %-*s  %s\n", mark, k.ID[:8], userW, k.UserName, hostW, k.HostName, k.Created)
	}
	_, err = fmt.Fprintln(g.stdout, line)
	return err
}

// readNewPassword reads the new password for key add/passwd: from the file
// if given, else from the terminal (twice). The repository password from
// the environment is deliberately not reused.
func (g *globalOptions) readNewPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read new password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("new password file %s is empty", file)
		}
		return pw, nil
	}
	return g.promptPassword("enter new password: ", true)
}

// addVerifiedKey writes a key file for password wrapping r's master key,
// then opens it again from the backend; a key file that does not give back
// the master key is removed and an error returned (H41).
func addVerifiedKey(ctx context.Context, r *repo.Repository, password string, o keyAddOptions) (*repo.KeyFile, error) {
	params, err := repo.KDFParams()
	if err != nil {
		return nil, fmt.Errorf("add key: %w", err)
	}
	kf, buf, err := repo.NewKeyFile(r.Key(), password, params, o.host)
	if err != nil {
		return nil, fmt.Errorf("add key: %w", err)
	}
	if o.user != "" {
		kf.Username = o.user
		if buf, err = json.Marshal(kf); err != nil {
			return nil, fmt.Errorf("add key: %w", err)
		}
	}
	id := core.Hash(buf)
	h := backend.Handle{Type: core.KeyFile, Name: id.String()}
	if err := r.Backend().Save(ctx, h, backend.NewByteReader(buf)); err != nil {
		return nil, fmt.Errorf("add key: save: %w", err)
	}
	mk, loaded, err := repo.SearchKey(ctx, r.Backend(), password, id.String(), 1)
	if err == nil && loaded.ID() != id {
		err = fmt.Errorf("opened key %v instead of %v", loaded.ID().Str(), id.Str())
	}
	if err == nil {
		var a, b []byte
		if a, err = json.Marshal(mk); err == nil {
			if b, err = json.Marshal(r.Key()); err == nil && string(a) != string(b) {
				err = errors.New("it holds another master key")
			}
		}
	}
	if err != nil {
		if rerr := r.Backend().Remove(context.WithoutCancel(ctx), h); rerr != nil {
			return nil, fmt.Errorf("add key: new key %v does not read back (%v), and removing it failed: %w", id.Str(), err, rerr)
		}
		return nil, fmt.Errorf("add key: new key %v does not read back, removed it: %w", id.Str(), err)
	}
	return loaded, nil
}

func runKeyAdd(ctx context.Context, g *globalOptions, o keyAddOptions) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "key add", false)
	if err != nil {
		return err
	}
	defer unlock()
	pw, err := g.readNewPassword(o.newPasswordFile)
	if err != nil {
		return err
	}
	kf, err := addVerifiedKey(ctx, r, pw, o)
	if err != nil {
		return err
	}
	if g.JSON {
		return g.printJSON(map[string]string{"message_type": "key_added", "id": kf.ID().String()})
	}
	g.printf("saved new key as %s\n", kf.ID())
	return nil
}

func runKeyRemove(ctx context.Context, g *globalOptions, prefix string) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, true, "key remove", false)
	if err != nil {
		return err
	}
	defer unlock()
	id, err := r.FindFile(ctx, core.KeyFile, prefix)
	if err != nil {
		return fmt.Errorf("key remove: %w", err)
	}
	if _, err := r.Backend().Stat(ctx, backend.Handle{Type: core.KeyFile, Name: id.String()}); err != nil {
		return fmt.Errorf("key remove: %w", err)
	}
	if id == r.KeyFile().ID() {
		return errors.New("key remove: refusing to remove the key currently used to access the repository")
	}
	if err := r.Backend().Remove(ctx, backend.Handle{Type: core.KeyFile, Name: id.String()}); err != nil {
		return fmt.Errorf("key remove %v: %w", id.Str(), err)
	}
	if g.JSON {
		return g.printJSON(map[string]string{"message_type": "key_removed", "id": id.String()})
	}
	g.printf("removed key %s\n", id)
	return nil
}

func runKeyPasswd(ctx context.Context, g *globalOptions, o keyAddOptions) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, true, "key passwd", false)
	if err != nil {
		return err
	}
	defer unlock()
	pw, err := g.readNewPassword(o.newPasswordFile)
	if err != nil {
		return err
	}
	kf, err := addVerifiedKey(ctx, r, pw, o)
	if err != nil {
		return err
	}
	old := r.KeyFile().ID()
	if err := r.Backend().Remove(ctx, backend.Handle{Type: core.KeyFile, Name: old.String()}); err != nil {
		return fmt.Errorf("key passwd: new key %v saved, but removing the old key %v failed: %w", kf.ID().Str(), old.Str(), err)
	}
	if g.JSON {
		return g.printJSON(map[string]string{"message_type": "key_changed", "id": kf.ID().String(), "removed": old.String()})
	}
	g.printf("saved new key as %s\n", kf.ID())
	g.printf("removed old key %s\n", old)
	return nil
}
