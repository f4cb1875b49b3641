package center

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// Group rights. A group has one owner (its creator), admins the owner
// names, and plain members. The owner and admins invite (add) users and
// remove plain members; only the owner opens or closes the group, names
// admins and removes admins. Anyone may join an open group; a closed one
// (the default) takes only whom a member with the right invites. Only
// members see the member list, read and post messages, and read files
// shared with the group. A non-member is told the same thing whether the
// group exists or not, so that trying ids teaches nothing.
//
// The operations run the same over GROUP frames and the HTTP API and give
// the same JSON; their checks read the store and then act, so a right
// taken away at the same instant may still be used once.

// GroupInfo answers CREATE and OPEN: the group's settings.
type GroupInfo struct {
	Group uint64 `json:"group"`
	Name  string `json:"name"`
	Owner uint64 `json:"owner"`
	Open  bool   `json:"open"`
}

// GroupMembership answers JOIN, INVITE, LEAVE, REMOVE and ROLE: user's
// membership of group after the operation. JoinSeq is the group's highest
// sequence number when user joined (messages up to it are not delivered to
// user); 0 after LEAVE and REMOVE. Role is "owner", "admin", "member", or
// "" once user is no longer a member.
type GroupMembership struct {
	Group   uint64 `json:"group"`
	User    uint64 `json:"user"`
	JoinSeq uint64 `json:"join_seq"`
	Role    string `json:"role"`
}

// GroupMemberList answers MEMBERS: every member id in ascending order, the
// owner and the admins among them.
type GroupMemberList struct {
	Group   uint64   `json:"group"`
	Name    string   `json:"name"`
	Owner   uint64   `json:"owner"`
	Open    bool     `json:"open"`
	Members []uint64 `json:"members"`
	Admins  []uint64 `json:"admins"`
}

// GroupList answers LIST: the caller's groups in ascending order.
type GroupList struct {
	Groups []uint64 `json:"groups"`
}

// GroupRequest is a group request's JSON, over frames or HTTP.
type GroupRequest struct {
	Name string `json:"name"`
	Open *bool  `json:"open"`
	User uint64 `json:"user"`
	Role string `json:"role"`
}

// roleNames maps storage roles to their JSON names.
var roleNames = [...]string{storage.RoleMember: "member", storage.RoleAdmin: "admin", storage.RoleOwner: "owner"}

func roleName(r uint8) string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "member"
}

// GroupError is a refusal of a group operation, with its HTTP status and
// ERROR frame code.
type GroupError struct {
	Status int
	Code   uint16
	Msg    string
}

func (e *GroupError) Error() string { return e.Msg }

var (
	errNotMember = &GroupError{http.StatusForbidden, frame.ErrCodeForbidden, "not a member of the group"}
	errClosed    = &GroupError{http.StatusForbidden, frame.ErrCodeForbidden,
		"the group is closed or does not exist: ask a member for an invite"}
	errNotAdmin     = &GroupError{http.StatusForbidden, frame.ErrCodeForbidden, "only the group's owner and admins may do this"}
	errNotOwner     = &GroupError{http.StatusForbidden, frame.ErrCodeForbidden, "only the group's owner may do this"}
	errOwnerStays   = &GroupError{http.StatusConflict, frame.ErrCodeForbidden, "the owner leaves last: remove the others first"}
	errNoSuchUser   = &GroupError{http.StatusNotFound, frame.ErrCodeNotFound, "no such user"}
	errNoSuchMember = &GroupError{http.StatusNotFound, frame.ErrCodeNotFound, "no such member"}
	errBadRole      = &GroupError{http.StatusBadRequest, frame.ErrCodeBadRequest, `role must be "admin" or "member"`}
	errBadName      = &GroupError{http.StatusBadRequest, frame.ErrCodeBadRequest, "group name must be 1 to 128 bytes of UTF-8"}
	errNeedUser     = &GroupError{http.StatusBadRequest, frame.ErrCodeBadRequest, `"user" must name another user`}
	errNeedOpen     = &GroupError{http.StatusBadRequest, frame.ErrCodeBadRequest, `"open" must be true or false`}
	errUnknownOp    = &GroupError{http.StatusBadRequest, frame.ErrCodeBadRequest, "unknown group operation"}
)

// GroupFailure turns an error of GroupOp into a refusal, through the one
// mapping of refusal.go (a *GroupError keeps its own code).
func GroupFailure(err error) *GroupError {
	code, status, text := refusalOf(err)
	return &GroupError{status, code, text}
}

// roster is a group's settings and members as one operation saw them.
type roster struct {
	info    storage.Group
	members []storage.Member
}

func (r *roster) role(user uint64) (uint8, bool) {
	i, ok := slices.BinarySearchFunc(r.members, user, func(m storage.Member, u uint64) int {
		switch {
		case m.User < u:
			return -1
		case m.User > u:
			return 1
		}
		return 0
	})
	if !ok {
		return 0, false
	}
	return r.members[i].Role, true
}

// loadRoster reads a group for user, who must be a member: a group that
// does not exist is refused like one user is not in.
func loadRoster(ctx context.Context, st storage.Groups, group, user uint64) (*roster, uint8, error) {
	info, err := st.GroupInfo(ctx, group)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, errNotMember
	}
	if err != nil {
		return nil, 0, err
	}
	ms, err := st.GroupMembers(ctx, group)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, errNotMember
	}
	if err != nil {
		return nil, 0, err
	}
	r := &roster{info: info, members: ms}
	role, ok := r.role(user)
	if !ok {
		return nil, 0, errNotMember
	}
	return r, role, nil
}

// GroupStore is what group operations need of the store: the groups, and
// the users invited to them.
type GroupStore interface {
	storage.Groups
	storage.Users
}

// GroupOp runs one group operation of user and returns its answer (one of
// the Group* types above, or nil for LEAVE). It blocks on the store: never
// on an event loop.
func GroupOp(ctx context.Context, st GroupStore, user uint64, op byte, group uint64, in GroupRequest) (any, error) {
	switch op {
	case frame.GroupCreate:
		if err := checkGroupName(in.Name); err != nil {
			return nil, err
		}
		id, err := st.CreateGroup(ctx, user, in.Name)
		if err != nil {
			return nil, err
		}
		open := in.Open != nil && *in.Open
		if open {
			if err := st.SetGroupOpen(ctx, id, true); err != nil {
				return nil, err
			}
		}
		return GroupInfo{Group: id, Name: in.Name, Owner: user, Open: open}, nil
	case frame.GroupJoin:
		return joinGroup(ctx, st, user, group)
	case frame.GroupLeave:
		r, role, err := loadRoster(ctx, st, group, user)
		if errors.Is(err, errNotMember) {
			return GroupMembership{Group: group, User: user}, nil // leaving twice is fine
		}
		if err != nil {
			return nil, err
		}
		if role == storage.RoleOwner && len(r.members) > 1 {
			return nil, errOwnerStays
		}
		if err := st.LeaveGroup(ctx, group, user); err != nil {
			return nil, err
		}
		return GroupMembership{Group: group, User: user}, nil
	case frame.GroupMembers:
		r, _, err := loadRoster(ctx, st, group, user)
		if err != nil {
			return nil, err
		}
		out := GroupMemberList{Group: group, Name: r.info.Name, Owner: r.info.Owner, Open: r.info.Open,
			Members: make([]uint64, len(r.members)), Admins: []uint64{}}
		for i, m := range r.members {
			out.Members[i] = m.User
			if m.Role == storage.RoleAdmin {
				out.Admins = append(out.Admins, m.User)
			}
		}
		return out, nil
	case frame.GroupList:
		gs, err := st.UserGroups(ctx, user)
		if gs == nil {
			gs = []uint64{}
		}
		return GroupList{Groups: gs}, err
	case frame.GroupInvite:
		return inviteToGroup(ctx, st, user, group, in.User)
	case frame.GroupRemove:
		return removeFromGroup(ctx, st, user, group, in.User)
	case frame.GroupOpen:
		if in.Open == nil {
			return nil, errNeedOpen
		}
		r, role, err := loadRoster(ctx, st, group, user)
		if err != nil {
			return nil, err
		}
		if role != storage.RoleOwner {
			return nil, errNotOwner
		}
		if err := st.SetGroupOpen(ctx, group, *in.Open); err != nil {
			return nil, err
		}
		return GroupInfo{Group: group, Name: r.info.Name, Owner: r.info.Owner, Open: *in.Open}, nil
	case frame.GroupRole:
		return setGroupRole(ctx, st, user, group, in)
	}
	return nil, errUnknownOp
}

// setGroupRole makes in.User an admin or a plain member of group (in.Role),
// at the owner's (user's) request.
func setGroupRole(ctx context.Context, st GroupStore, user, group uint64, in GroupRequest) (any, error) {
	var want uint8
	switch in.Role {
	case "admin":
		want = storage.RoleAdmin
	case "member":
		want = storage.RoleMember
	default:
		return nil, errBadRole
	}
	if in.User == 0 || in.User == user {
		return nil, errNeedUser
	}
	r, role, err := loadRoster(ctx, st, group, user)
	if err != nil {
		return nil, err
	}
	if role != storage.RoleOwner {
		return nil, errNotOwner
	}
	m, ok := r.role(in.User)
	if !ok {
		return nil, errNoSuchMember
	}
	if m != want {
		if err := st.SetGroupRole(ctx, group, in.User, want); err != nil {
			return nil, err
		}
	}
	return membership(ctx, st, group, in.User)
}

func checkGroupName(name string) error {
	if name == "" || len(name) > storage.MaxNameLen {
		return errBadName
	}
	return nil
}

// joinGroup lets user in when the group is open; a member joining again
// gets its membership back. A closed group and a group that does not exist
// are refused alike.
func joinGroup(ctx context.Context, st storage.Groups, user, group uint64) (any, error) {
	info, err := st.GroupInfo(ctx, group)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errClosed
	}
	if err != nil {
		return nil, err
	}
	if !info.Open {
		if _, _, err := loadRoster(ctx, st, group, user); err != nil {
			if errors.Is(err, errNotMember) {
				return nil, errClosed
			}
			return nil, err
		}
	}
	if _, err := st.JoinGroup(ctx, group, user); err != nil {
		return nil, err
	}
	return membership(ctx, st, group, user)
}

// inviteToGroup adds who to the group: the owner and admins may.
func inviteToGroup(ctx context.Context, st GroupStore, user, group, who uint64) (any, error) {
	if who == 0 || who == user {
		return nil, errNeedUser
	}
	_, role, err := loadRoster(ctx, st, group, user)
	if err != nil {
		return nil, err
	}
	if role == storage.RoleMember {
		return nil, errNotAdmin
	}
	if _, err := st.UserByID(ctx, who); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errNoSuchUser
		}
		return nil, err
	}
	if _, err := st.JoinGroup(ctx, group, who); err != nil {
		return nil, err
	}
	return membership(ctx, st, group, who)
}

// removeFromGroup takes who out: the owner removes anyone else, an admin
// plain members.
func removeFromGroup(ctx context.Context, st storage.Groups, user, group, who uint64) (any, error) {
	if who == 0 || who == user {
		return nil, errNeedUser
	}
	r, role, err := loadRoster(ctx, st, group, user)
	if err != nil {
		return nil, err
	}
	target, ok := r.role(who)
	if !ok {
		return nil, errNoSuchMember
	}
	switch {
	case role == storage.RoleMember:
		return nil, errNotAdmin
	case role == storage.RoleAdmin && target != storage.RoleMember:
		return nil, errNotOwner
	}
	if err := st.LeaveGroup(ctx, group, who); err != nil {
		return nil, err
	}
	return GroupMembership{Group: group, User: who}, nil
}

// membership reads user's membership of group as the store has it now.
func membership(ctx context.Context, st storage.Groups, group, user uint64) (GroupMembership, error) {
	ms, err := st.GroupMembers(ctx, group)
	if err != nil {
		return GroupMembership{}, err
	}
	for _, m := range ms {
		if m.User == user {
			return GroupMembership{Group: group, User: user, JoinSeq: m.JoinSeq, Role: roleName(m.Role)}, nil
		}
	}
	return GroupMembership{Group: group, User: user}, nil
}
