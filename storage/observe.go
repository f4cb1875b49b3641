package storage

import (
	"context"
	"time"
)

// Method names a Store method, for Observe. String returns the method's
// name, which metrics use as a label.
type Method uint8

// The observed methods, in the order the Store interface lists them; Close
// is not observed.
const (
	MethodCreateUser Method = iota
	MethodUserByName
	MethodUserByID
	MethodUpdateProfile
	MethodTouchDevice
	MethodDevices
	MethodRequestFriend
	MethodAcceptFriend
	MethodRemoveFriend
	MethodFriends
	MethodPendingFriendRequests
	MethodStoreOffline
	MethodFetchOffline
	MethodDeleteOffline
	MethodCountOffline
	MethodCreateGroup
	MethodJoinGroup
	MethodLeaveGroup
	MethodGroupMembers
	MethodUserGroups
	MethodGroupInfo
	MethodSetGroupOpen
	MethodSetGroupRole
	MethodAppendGroupMsg
	MethodAppendGroupMsgs
	MethodFetchGroup
	MethodAckGroup
	MethodAckGroups
	MethodPurgeExpiredGroupMsgs
	MethodCountGroupMsgs
	MethodRevokeToken
	MethodRevokedTokens
	MethodCreateInvite
	MethodUseInvite
	MethodCreateUpload
	MethodUploadByID
	MethodDeleteUpload
	MethodStaleUploads
	MethodCommitUpload
	MethodFileByID
	MethodFiles
	MethodDeleteFile
	MethodShareFile
	MethodUnshareFile
	MethodFileShares
	MethodUsedBytes
	MethodPing
	MethodCount // the number of observed methods, not a method
)

var methodNames = [MethodCount]string{
	"CreateUser",
	"UserByName",
	"UserByID",
	"UpdateProfile",
	"TouchDevice",
	"Devices",
	"RequestFriend",
	"AcceptFriend",
	"RemoveFriend",
	"Friends",
	"PendingFriendRequests",
	"StoreOffline",
	"FetchOffline",
	"DeleteOffline",
	"CountOffline",
	"CreateGroup",
	"JoinGroup",
	"LeaveGroup",
	"GroupMembers",
	"UserGroups",
	"GroupInfo",
	"SetGroupOpen",
	"SetGroupRole",
	"AppendGroupMsg",
	"AppendGroupMsgs",
	"FetchGroup",
	"AckGroup",
	"AckGroups",
	"PurgeExpiredGroupMsgs",
	"CountGroupMsgs",
	"RevokeToken",
	"RevokedTokens",
	"CreateInvite",
	"UseInvite",
	"CreateUpload",
	"UploadByID",
	"DeleteUpload",
	"StaleUploads",
	"CommitUpload",
	"FileByID",
	"Files",
	"DeleteFile",
	"ShareFile",
	"UnshareFile",
	"FileShares",
	"UsedBytes",
	"Ping",
}

// String returns the method's name ("FetchOffline"), or "unknown".
func (m Method) String() string {
	if m < MethodCount {
		return methodNames[m]
	}
	return "unknown"
}

// Observer is told of every call an observed Store completes: the method,
// how long the call took and the error it returned (nil on success). It is
// called on the caller's goroutine after the call, concurrently when the
// store is used concurrently, so it must be safe for concurrent use and must
// not block.
type Observer func(m Method, d time.Duration, err error)

// Observe returns a Store that forwards every call to s and reports each
// one, Close excepted, to obs. Observing costs two clock reads and the
// observer's call: no lock and no allocation. The result is safe for
// concurrent use as s is; closing it closes s.
func Observe(s Store, obs Observer) Store { return &observed{s: s, obs: obs} }

// observed is the Store Observe returns. It does not embed Store: a method
// added to the interface fails to compile here until it is observed too.
type observed struct {
	s   Store
	obs Observer
}

// timed calls f and reports it as m.
func timed[T any](o *observed, m Method, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	o.obs(m, time.Since(start), err)
	return v, err
}

// timedErr is timed for the methods that return only an error.
func (o *observed) timedErr(m Method, f func() error) error {
	start := time.Now()
	err := f()
	o.obs(m, time.Since(start), err)
	return err
}

func (o *observed) CreateUser(ctx context.Context, u User) (uint64, error) {
	return timed(o, MethodCreateUser, func() (uint64, error) { return o.s.CreateUser(ctx, u) })
}

func (o *observed) UserByName(ctx context.Context, name string) (User, error) {
	return timed(o, MethodUserByName, func() (User, error) { return o.s.UserByName(ctx, name) })
}

func (o *observed) UserByID(ctx context.Context, id uint64) (User, error) {
	return timed(o, MethodUserByID, func() (User, error) { return o.s.UserByID(ctx, id) })
}

func (o *observed) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	return o.timedErr(MethodUpdateProfile, func() error { return o.s.UpdateProfile(ctx, id, signature, profile) })
}

func (o *observed) TouchDevice(ctx context.Context, d Device) (bool, error) {
	return timed(o, MethodTouchDevice, func() (bool, error) { return o.s.TouchDevice(ctx, d) })
}

func (o *observed) Devices(ctx context.Context, user uint64) ([]Device, error) {
	return timed(o, MethodDevices, func() ([]Device, error) { return o.s.Devices(ctx, user) })
}

func (o *observed) RequestFriend(ctx context.Context, from, to uint64) error {
	return o.timedErr(MethodRequestFriend, func() error { return o.s.RequestFriend(ctx, from, to) })
}

func (o *observed) AcceptFriend(ctx context.Context, user, requester uint64) error {
	return o.timedErr(MethodAcceptFriend, func() error { return o.s.AcceptFriend(ctx, user, requester) })
}

func (o *observed) RemoveFriend(ctx context.Context, a, b uint64) error {
	return o.timedErr(MethodRemoveFriend, func() error { return o.s.RemoveFriend(ctx, a, b) })
}

func (o *observed) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	return timed(o, MethodFriends, func() ([]uint64, error) { return o.s.Friends(ctx, user) })
}

func (o *observed) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	return timed(o, MethodPendingFriendRequests, func() ([]uint64, error) { return o.s.PendingFriendRequests(ctx, user) })
}

func (o *observed) StoreOffline(ctx context.Context, msgs []Message) error {
	return o.timedErr(MethodStoreOffline, func() error { return o.s.StoreOffline(ctx, msgs) })
}

func (o *observed) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]Message, error) {
	return timed(o, MethodFetchOffline, func() ([]Message, error) { return o.s.FetchOffline(ctx, user, afterMID, limit) })
}

func (o *observed) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	return o.timedErr(MethodDeleteOffline, func() error { return o.s.DeleteOffline(ctx, user, mids) })
}

func (o *observed) CountOffline(ctx context.Context, user uint64) (int, error) {
	return timed(o, MethodCountOffline, func() (int, error) { return o.s.CountOffline(ctx, user) })
}

func (o *observed) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	return timed(o, MethodCreateGroup, func() (uint64, error) { return o.s.CreateGroup(ctx, owner, name) })
}

func (o *observed) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	return timed(o, MethodJoinGroup, func() (uint64, error) { return o.s.JoinGroup(ctx, group, user) })
}

func (o *observed) LeaveGroup(ctx context.Context, group, user uint64) error {
	return o.timedErr(MethodLeaveGroup, func() error { return o.s.LeaveGroup(ctx, group, user) })
}

func (o *observed) GroupMembers(ctx context.Context, group uint64) ([]Member, error) {
	return timed(o, MethodGroupMembers, func() ([]Member, error) { return o.s.GroupMembers(ctx, group) })
}

func (o *observed) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	return timed(o, MethodUserGroups, func() ([]uint64, error) { return o.s.UserGroups(ctx, user) })
}

func (o *observed) GroupInfo(ctx context.Context, group uint64) (Group, error) {
	return timed(o, MethodGroupInfo, func() (Group, error) { return o.s.GroupInfo(ctx, group) })
}

func (o *observed) SetGroupOpen(ctx context.Context, group uint64, open bool) error {
	return o.timedErr(MethodSetGroupOpen, func() error { return o.s.SetGroupOpen(ctx, group, open) })
}

func (o *observed) SetGroupRole(ctx context.Context, group, user uint64, role uint8) error {
	return o.timedErr(MethodSetGroupRole, func() error { return o.s.SetGroupRole(ctx, group, user, role) })
}

func (o *observed) AppendGroupMsg(ctx context.Context, m GroupMessage) (uint64, error) {
	return timed(o, MethodAppendGroupMsg, func() (uint64, error) { return o.s.AppendGroupMsg(ctx, m) })
}

func (o *observed) AppendGroupMsgs(ctx context.Context, ms []GroupMessage) error {
	return o.timedErr(MethodAppendGroupMsgs, func() error { return o.s.AppendGroupMsgs(ctx, ms) })
}

func (o *observed) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]GroupMessage, error) {
	return timed(o, MethodFetchGroup, func() ([]GroupMessage, error) { return o.s.FetchGroup(ctx, group, user, afterSeq, limit) })
}

func (o *observed) AckGroups(ctx context.Context, acks []GroupAck) error {
	return o.timedErr(MethodAckGroups, func() error { return o.s.AckGroups(ctx, acks) })
}

func (o *observed) AckGroup(ctx context.Context, group, user, seq uint64) error {
	return o.timedErr(MethodAckGroup, func() error { return o.s.AckGroup(ctx, group, user, seq) })
}

func (o *observed) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
	return timed(o, MethodPurgeExpiredGroupMsgs, func() (int, error) { return o.s.PurgeExpiredGroupMsgs(ctx, now) })
}

func (o *observed) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	return timed(o, MethodCountGroupMsgs, func() (int, error) { return o.s.CountGroupMsgs(ctx, group) })
}

func (o *observed) RevokeToken(ctx context.Context, sid string, until int64) error {
	return o.timedErr(MethodRevokeToken, func() error { return o.s.RevokeToken(ctx, sid, until) })
}

func (o *observed) RevokedTokens(ctx context.Context, now int64) (map[string]int64, error) {
	return timed(o, MethodRevokedTokens, func() (map[string]int64, error) { return o.s.RevokedTokens(ctx, now) })
}

func (o *observed) CreateInvite(ctx context.Context, inv Invite, limit int) error {
	return o.timedErr(MethodCreateInvite, func() error { return o.s.CreateInvite(ctx, inv, limit) })
}

func (o *observed) UseInvite(ctx context.Context, hash [32]byte, now int64) (Invite, error) {
	return timed(o, MethodUseInvite, func() (Invite, error) { return o.s.UseInvite(ctx, hash, now) })
}

func (o *observed) CreateUpload(ctx context.Context, u Upload, quota int64) (uint64, error) {
	return timed(o, MethodCreateUpload, func() (uint64, error) { return o.s.CreateUpload(ctx, u, quota) })
}

func (o *observed) UploadByID(ctx context.Context, id uint64) (Upload, error) {
	return timed(o, MethodUploadByID, func() (Upload, error) { return o.s.UploadByID(ctx, id) })
}

func (o *observed) DeleteUpload(ctx context.Context, id uint64) error {
	return o.timedErr(MethodDeleteUpload, func() error { return o.s.DeleteUpload(ctx, id) })
}

func (o *observed) StaleUploads(ctx context.Context, before int64, limit int) ([]Upload, error) {
	return timed(o, MethodStaleUploads, func() ([]Upload, error) { return o.s.StaleUploads(ctx, before, limit) })
}

func (o *observed) CommitUpload(ctx context.Context, upload uint64, now int64) (File, error) {
	return timed(o, MethodCommitUpload, func() (File, error) { return o.s.CommitUpload(ctx, upload, now) })
}

func (o *observed) FileByID(ctx context.Context, id uint64) (File, error) {
	return timed(o, MethodFileByID, func() (File, error) { return o.s.FileByID(ctx, id) })
}

func (o *observed) Files(ctx context.Context, owner uint64) ([]File, error) {
	return timed(o, MethodFiles, func() ([]File, error) { return o.s.Files(ctx, owner) })
}

func (o *observed) DeleteFile(ctx context.Context, owner, id uint64) (File, int64, error) {
	var refs int64
	f, err := timed(o, MethodDeleteFile, func() (f File, err error) {
		f, refs, err = o.s.DeleteFile(ctx, owner, id)
		return f, err
	})
	return f, refs, err
}

func (o *observed) ShareFile(ctx context.Context, s Share) error {
	return o.timedErr(MethodShareFile, func() error { return o.s.ShareFile(ctx, s) })
}

func (o *observed) UnshareFile(ctx context.Context, s Share) error {
	return o.timedErr(MethodUnshareFile, func() error { return o.s.UnshareFile(ctx, s) })
}

func (o *observed) FileShares(ctx context.Context, file uint64) ([]Share, error) {
	return timed(o, MethodFileShares, func() ([]Share, error) { return o.s.FileShares(ctx, file) })
}

func (o *observed) UsedBytes(ctx context.Context, owner uint64) (int64, error) {
	return timed(o, MethodUsedBytes, func() (int64, error) { return o.s.UsedBytes(ctx, owner) })
}

func (o *observed) Ping(ctx context.Context) error {
	return o.timedErr(MethodPing, func() error { return o.s.Ping(ctx) })
}

// Close closes the observed store; it is not reported.
func (o *observed) Close() error { return o.s.Close() }
