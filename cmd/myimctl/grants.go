package main

import (
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"
)

// The commands over groups, invites and tokens.

func (c *ctl) groupInfo(_ *flag.FlagSet, args []string) error {
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 {
		return usageError{fmt.Sprintf("group id must be a positive number, not %q", args[0])}
	}
	var g struct {
		ID       uint64 `json:"id"`
		Name     string `json:"name"`
		Owner    uint64 `json:"owner"`
		Seq      uint64 `json:"highest_seq"`
		Members  int    `json:"members"`
		Messages int    `json:"stored_messages"`
	}
	raw, err := c.call("GET", c.admin, fmt.Sprintf("/v1/admin/groups/%d", id), nil, true, &g)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "id\t%d\nname\t%s\nowner\t%d\nmembers\t%d\nhighest seq\t%d\nstored messages\t%d\n",
			g.ID, g.Name, g.Owner, g.Members, g.Seq, g.Messages)
	})
}

func (c *ctl) inviteNew(_ *flag.FlagSet, _ []string) error {
	var inv struct {
		Code      string `json:"code"`
		ExpiresAt int64  `json:"expires_at"`
	}
	raw, err := c.call("POST", c.admin, "/v1/admin/invites", struct{}{}, true, &inv)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "code\t%s\nexpires\t%s\n", inv.Code, time.UnixMilli(inv.ExpiresAt).UTC().Format(time.RFC3339))
	})
}

func (c *ctl) tokenIssue(fs *flag.FlagSet, args []string) error {
	id, err := userID(args[0])
	if err != nil {
		return err
	}
	key := fs.Lookup("device-key").Value.String()
	if key == "" {
		return usageError{"--device-key is required"}
	}
	body := map[string]any{"users": []uint64{id}, "device_key": key, "ttl": fs.Lookup("ttl").Value.String()}
	var out struct {
		Tokens    []string `json:"tokens"`
		ExpiresAt int64    `json:"expires_at"`
	}
	raw, err := c.call("POST", c.admin, "/v1/admin/tokens", body, true, &out)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		for _, tok := range out.Tokens {
			fmt.Fprintf(tw, "token\t%s\n", tok)
		}
		fmt.Fprintf(tw, "expires\t%s\n", time.UnixMilli(out.ExpiresAt).UTC().Format(time.RFC3339))
	})
}
